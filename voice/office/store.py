"""The records of calls in SQLite, and the spool that keeps a slow or failing store off the calls.

`SqliteStore` is the embedded default: one database file in the data dir (WAL mode) and the
recordings folder beside it. `SpooledStore` (in `voice.office.spool`, exported here) wraps any
`voice.office.records.Store` for live calls: writes are queued in memory and applied in order by one
worker thread, retried until they land.
The PostgreSQL store (`voice.office.postgres`) implements the same `Store` protocol and is
wrapped the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from text.words import plain_words
from voice.office.database import BUSY_TIMEOUT_MS, Database
from voice.office.records import (
    LOST,
    CallAction,
    CallDetail,
    CallQuery,
    CallRecord,
    DayCounts,
    Feedback,
    GapQuestion,
    TurnRecord,
)
from voice.office.spool import SpooledStore

__all__ = ["Database", "SpooledStore", "SqliteStore", "normalize_question"]

log = logging.getLogger(__name__)

ORPHAN_GRACE_S = 86400.0
"""A call never ended (the server died mid-call) is purged this long after the cut-off."""
UNANSWERED_RULES = ("out_of_scope", "clarify", "not_understood")
"""The rules that mean the knowledge base gave no answer on that turn: nothing matched, or the
caller was asked to say it again or to choose (agent.guardrails)."""
NOT_QUESTIONS = ("human_request",)
"""The rules that mean the caller asked for a person, by voice or on the keypad (0): no
question the knowledge base could have answered, handed off as it should be."""
NOT_QUESTION_BACKENDS = ("keypad", "supervisor", "person", "hold", "handback")
"""Who wrote a reply to no question: a keypad digit, a supervisor's words typed or spoken
(a person holding the call), the hold and hand-back messages. A caller's words while a
person holds the call are kept with "person" too."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id    TEXT PRIMARY KEY,
    channel    TEXT NOT NULL,
    caller_id  TEXT,
    started_at REAL NOT NULL,               -- Unix seconds
    ended_at   REAL,                        -- NULL while live
    end_reason TEXT,
    metadata   TEXT NOT NULL DEFAULT '{}',  -- JSON object
    recording  TEXT                         -- file name in the recordings folder
);
CREATE TABLE IF NOT EXISTS turns (
    call_id    TEXT NOT NULL,
    turn       INTEGER NOT NULL,
    at         REAL NOT NULL,
    question   TEXT NOT NULL,
    reply      TEXT NOT NULL,
    sources    TEXT NOT NULL DEFAULT '[]',  -- JSON array of str
    handoff    INTEGER NOT NULL DEFAULT 0,
    rules      TEXT NOT NULL DEFAULT '[]',  -- JSON array of str
    barge_in   INTEGER NOT NULL DEFAULT 0,
    timings_ms TEXT NOT NULL DEFAULT '{}',  -- JSON object, str -> int | null
    backend    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (call_id, turn)
);
CREATE TABLE IF NOT EXISTS feedback (
    id      INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    turn    INTEGER NOT NULL,
    helpful INTEGER NOT NULL,
    at      REAL NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    UNIQUE (call_id, turn, at)
);
CREATE TABLE IF NOT EXISTS actions (
    call_id TEXT NOT NULL,
    at      REAL NOT NULL,
    action  TEXT NOT NULL,                  -- waiting, taken, handed_back, ended, missed
    by      TEXT NOT NULL DEFAULT '',       -- the supervisor
    detail  TEXT NOT NULL DEFAULT '',
    UNIQUE (call_id, at, action)
);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
CREATE INDEX IF NOT EXISTS calls_channel ON calls (channel, started_at);
CREATE INDEX IF NOT EXISTS calls_ended ON calls (ended_at);
CREATE INDEX IF NOT EXISTS turns_at ON turns (at);
CREATE INDEX IF NOT EXISTS turns_handoff ON turns (call_id) WHERE handoff;
CREATE INDEX IF NOT EXISTS feedback_turn ON feedback (call_id, turn);
CREATE INDEX IF NOT EXISTS actions_call ON actions (call_id, at);
PRAGMA user_version = 2;
"""


def normalize_question(text: str) -> str:
    """The form questions are grouped by: their words (`text.words.plain_words`), one space
    apart."""
    return " ".join(plain_words(text))


def group_gaps(rows: Iterable[tuple[str, float, Any, Any]], limit: int) -> list[GapQuestion]:
    """`Store.gaps` from its turns, oldest first: (question, at, handed off, last marked
    unhelpful). Grouped by `normalize_question`, each group worded as its latest question, most
    frequent first, then most recent."""
    groups: dict[str, list[Any]] = {}
    for question, at, handoff, unhelpful in rows:
        key = normalize_question(question)
        if not key:
            continue
        group = groups.setdefault(key, [question, 0, 0, 0, at])
        group[1] += 1
        group[2] += bool(handoff)
        group[3] += bool(unhelpful)
        if at >= group[4]:
            group[0], group[4] = question, at
    found = [GapQuestion(q, n, h, u, at) for q, n, h, u, at in groups.values()]
    found.sort(key=lambda g: (-g.count, -g.last_at))
    return found[: max(limit, 0)]


def delete_recording(folder: Path | None, name: str | None) -> None:
    """Delete a purged call's recording file (`name` as its row holds it) from `folder`; a file
    that cannot be deleted is logged and left."""
    if not name or folder is None:
        return
    try:
        (folder / Path(name).name).unlink(missing_ok=True)
    except OSError as err:
        log.warning("recording %s not deleted: %s", name, err)


def sweep_recordings(
    folder: Path | None, before: float, named: Callable[[], Iterable[str]]
) -> None:
    """Delete the recording files in `folder` that no call names (`named()`: the recordings
    the calls' rows hold, asked only when there is a folder) and that were last written before
    `before`: those of calls never ended, whose rows did not learn the file's name."""
    if folder is None or not folder.is_dir():
        return
    kept = {Path(name).name for name in named()}
    for path in folder.glob("*.wav"):
        try:
            if path.name not in kept and path.stat().st_mtime < before:
                path.unlink()
        except OSError as err:
            log.warning("recording %s not deleted: %s", path.name, err)


class SqliteStore:
    """The call records in one SQLite file; implements `voice.office.records.Store`.

    Thread-safe (a connection per thread; see `Database`), but every method does disk I/O and
    may wait up to the busy timeout for a lock: call it from a worker thread, never from the event
    loop. Failures raise `sqlite3.Error` or `OSError`; writes are idempotent, so retrying one
    that failed is safe.

    Args:
        path: The database file; created with its schema when missing.
        recordings_dir: Where the recordings are; `purge` deletes the purged calls' files there.
    """

    def __init__(
        self,
        path: Path,
        recordings_dir: Path | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.recordings_dir = recordings_dir
        self._db = Database(path, SCHEMA, busy_timeout_ms)

    @property
    def database(self) -> Database:
        """The SQLite file underneath, for maintenance and tests."""
        return self._db

    # ------------------------------------------------------------ writes

    def start_call(self, call: CallRecord) -> None:
        with self._db.write() as db:
            db.execute(
                START_CALL,
                (
                    call.call_id,
                    call.channel,
                    call.caller_id,
                    call.started_at,
                    call.ended_at,
                    call.end_reason,
                    _dumps(call.metadata),
                    call.recording,
                ),
            )

    def end_call(self, call_id: str, ended_at: float, reason: str, recording: str | None) -> None:
        """Mark a call ended, once. A call never started is logged and ignored."""
        with self._db.write() as db:
            cursor = db.execute(END_CALL, (ended_at, reason, recording, call_id))
        if cursor.rowcount == 0:
            log.warning("end of call %s ignored: it never started, or it has ended", call_id)

    def add_turn(self, turn: TurnRecord) -> None:
        """Keep a turn; a turn kept again (same call and number) replaces the first."""
        with self._db.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO turns (call_id, turn, at, question, reply, sources,"
                " handoff, rules, barge_in, timings_ms, backend)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    turn.call_id,
                    turn.turn,
                    turn.at,
                    turn.question,
                    turn.reply,
                    _dumps(list(turn.sources)),
                    int(turn.handoff),
                    _dumps(list(turn.rules)),
                    int(turn.barge_in),
                    _dumps(turn.timings_ms),
                    turn.backend,
                ),
            )

    def add_feedback(self, feedback: Feedback) -> None:
        """Keep a verdict on a turn; the latest verdict on a turn is the one that counts."""
        with self._db.write() as db:
            db.execute(
                ADD_FEEDBACK,
                (
                    feedback.call_id,
                    feedback.turn,
                    int(feedback.helpful),
                    feedback.at,
                    feedback.comment,
                ),
            )

    def add_action(self, action: CallAction) -> None:
        """Keep a supervisor's (or the queue's) action on a call."""
        with self._db.write() as db:
            db.execute(
                ADD_ACTION, (action.call_id, action.at, action.action, action.by, action.detail)
            )

    def purge(self, before: float) -> int:
        """Delete calls that ended before `before` (Unix seconds) with their turns, feedback and
        recording files, and calls never ended (the server stopped mid-call) that started
        `ORPHAN_GRACE_S` before that, with recording files no call names, as old.

        Returns how many calls were deleted. A recording file that cannot be deleted is logged
        and left; the rows go anyway."""
        where = "ended_at < ? OR (ended_at IS NULL AND started_at < ?)"
        args = (before, before - ORPHAN_GRACE_S)
        doomed_ids = f"SELECT call_id FROM calls WHERE {where}"
        with self._db.write() as db:
            doomed = db.execute(f"SELECT call_id, recording FROM calls WHERE {where}", args)
            recordings = [recording for _, recording in doomed]
            db.execute(f"DELETE FROM turns WHERE call_id IN ({doomed_ids})", args)
            db.execute(f"DELETE FROM feedback WHERE call_id IN ({doomed_ids})", args)
            db.execute(f"DELETE FROM actions WHERE call_id IN ({doomed_ids})", args)
            db.execute(
                "DELETE FROM feedback WHERE at < ? AND call_id NOT IN (SELECT call_id FROM calls)",
                (before,),
            )
            db.execute(f"DELETE FROM calls WHERE {where}", args)
        for recording in recordings:
            delete_recording(self.recordings_dir, recording)
        sweep_recordings(self.recordings_dir, before - ORPHAN_GRACE_S, self._named_recordings)
        return len(recordings)

    def _named_recordings(self) -> list[str]:
        rows = self._db.connection().execute("SELECT recording FROM calls WHERE recording != ''")
        return [name for (name,) in rows]

    # ------------------------------------------------------------ reads

    def calls(self, query: CallQuery) -> list[CallRecord]:
        """The calls that match, newest first."""
        where, args = _call_filter(query)
        rows = self._db.connection().execute(
            f"SELECT {CALL_COLUMNS} FROM calls c WHERE {where}"
            " ORDER BY c.started_at DESC, c.call_id DESC LIMIT ? OFFSET ?",
            [*args, max(query.limit, 0), max(query.offset, 0)],
        )
        return [_call(row) for row in rows]

    def call(self, call_id: str) -> CallDetail | None:
        """One call with its turns (in order) and feedback (oldest first); None if unknown."""
        db = self._db.connection()
        found = db.execute(SELECT_CALL, (call_id,)).fetchone()
        if found is None:
            return None
        turns = db.execute(SELECT_TURNS, (call_id,))
        feedback = db.execute(SELECT_FEEDBACK, (call_id,))
        actions = db.execute(SELECT_ACTIONS.format(tiebreak="rowid"), (call_id,))
        return CallDetail(
            call=_call(found),
            turns=tuple(_turn(r) for r in turns),
            feedback=tuple(Feedback(c, t, bool(h), a, m) for c, t, h, a, m in feedback),
            actions=tuple(CallAction(*row) for row in actions),
        )

    def gaps(self, since: float, limit: int = 20) -> list[GapQuestion]:
        """The questions asked since `since` that were handed off, unanswered (an empty reply,
        or a rule of UNANSWERED_RULES: out of scope, asked again) or last marked unhelpful,
        grouped by `normalize_question`, most frequent first. Each group shows its latest
        wording. Asking for a person (NOT_QUESTIONS) and keypad digits are no questions."""
        rows = self._db.connection().execute(
            f"SELECT t.question, t.at, t.handoff, ({UNHELPFUL}) AS unhelpful FROM turns t"
            f" WHERE t.at >= ? AND t.question != '' AND NOT {_NOT_A_QUESTION}"
            " AND (t.handoff OR trim(t.reply) = ''"
            f" OR {_OUT_OF_SCOPE} OR ({UNHELPFUL}))"
            " ORDER BY t.at, t.call_id, t.turn",
            (since,),
        )
        return group_gaps(rows, limit)

    def daily(self, since: float) -> list[DayCounts]:
        """Turns since `since` per UTC day, oldest first: answered (a reply, not handed off, not
        out of scope), handed off, and last marked unhelpful (these overlap the other two)."""
        rows = self._db.connection().execute(
            "SELECT date(t.at, 'unixepoch') AS day,"
            f" sum(NOT t.handoff AND trim(t.reply) != '' AND NOT {_OUT_OF_SCOPE}),"
            f" sum(t.handoff), sum(coalesce(({UNHELPFUL}), 0))"
            " FROM turns t WHERE t.at >= ? GROUP BY day ORDER BY day",
            (since,),
        )
        return [DayCounts(day, int(a), int(h), int(u)) for day, a, h, u in rows]

    def close(self) -> None:
        self._db.close()


# The statements both stores run alike (SQLite's and voice.office.postgres's, which turns the
# `?` placeholders into psycopg's), and the pieces of their queries.
CALL_COLUMNS = (
    "c.call_id, c.channel, c.started_at, c.caller_id, c.ended_at, c.end_reason, c.metadata,"
    " c.recording"
)
TURN_COLUMNS = (
    "t.call_id, t.turn, t.at, t.question, t.reply, t.sources, t.handoff, t.rules, t.barge_in,"
    " t.timings_ms, t.backend"
)
UNHELPFUL = (
    "SELECT NOT f.helpful FROM feedback f WHERE f.call_id = t.call_id AND f.turn = t.turn"
    " ORDER BY f.at DESC, f.id DESC LIMIT 1"
)
START_CALL = (
    "INSERT INTO calls (call_id, channel, caller_id, started_at, ended_at, end_reason, metadata,"
    " recording) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (call_id) DO UPDATE SET channel = excluded.channel,"
    " caller_id = excluded.caller_id, started_at = excluded.started_at,"
    " metadata = excluded.metadata"
)
"""A call started again (a retried write applied late) keeps its end."""
END_CALL = (
    "UPDATE calls SET ended_at = ?, end_reason = ?, recording = ?"
    f" WHERE call_id = ? AND (ended_at IS NULL OR end_reason = '{LOST}')"
)
"""A call ends once: a second end (a server that ends as lost a call whose own end reached the
records, a retried write) changes nothing — but the call's own end replaces `server_lost`, for
a server that was only cut off from the others (`voice.office.floor`)."""
ADD_FEEDBACK = (
    "INSERT INTO feedback (call_id, turn, helpful, at, comment) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)
ADD_ACTION = (
    'INSERT INTO actions (call_id, at, action, "by", detail) VALUES (?, ?, ?, ?, ?)'
    " ON CONFLICT DO NOTHING"
)
SELECT_CALL = f"SELECT {CALL_COLUMNS} FROM calls c WHERE c.call_id = ?"
SELECT_TURNS = f"SELECT {TURN_COLUMNS} FROM turns t WHERE t.call_id = ? ORDER BY t.turn"
SELECT_FEEDBACK = (
    "SELECT call_id, turn, helpful, at, comment FROM feedback WHERE call_id = ? ORDER BY at, id"
)
SELECT_ACTIONS = (
    'SELECT call_id, at, action, "by", detail FROM actions WHERE call_id = ?'
    " ORDER BY at, {tiebreak}"
)
"""`tiebreak`: what orders actions of the same time as they came (SQLite's rowid, an id)."""


def _listed(names: tuple[str, ...]) -> str:
    """SQL: the literal list of `names` (constants of this module, no quotes in them)."""
    return ", ".join(f"'{name}'" for name in names)


def _any_rule(rules: tuple[str, ...]) -> str:
    """SQL: one of `rules` fired on turn `t`."""
    return f"EXISTS (SELECT 1 FROM json_each(t.rules) r WHERE r.value IN ({_listed(rules)}))"


_OUT_OF_SCOPE = _any_rule(UNANSWERED_RULES)
_NOT_A_QUESTION = f"({_any_rule(NOT_QUESTIONS)} OR t.backend IN ({_listed(NOT_QUESTION_BACKENDS)}))"


def _call_filter(query: CallQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (over `calls c`) and its arguments for a query."""
    where, args = ["1"], list[Any]()
    if query.since is not None:
        where.append("c.started_at >= ?")
        args.append(query.since)
    if query.until is not None:
        where.append("c.started_at < ?")
        args.append(query.until)
    if query.channel is not None:
        where.append("c.channel = ?")
        args.append(query.channel)
    turn = "EXISTS (SELECT 1 FROM turns t WHERE t.call_id = c.call_id AND {})"
    if query.handoff is not None:
        where.append(("" if query.handoff else "NOT ") + turn.format("t.handoff"))
    if query.rule == "*":
        where.append(turn.format("json_array_length(t.rules) > 0"))
    elif query.rule is not None:
        rule = "EXISTS (SELECT 1 FROM json_each(t.rules) r WHERE r.value = ?)"
        where.append(turn.format(rule))
        args.append(query.rule)
    for word in plain_words(query.text or ""):  # as `fold` writes the stored text
        where.append(turn.format("(instr(fold(t.question), ?) OR instr(fold(t.reply), ?))"))
        args += [word, word]
    return " AND ".join(where), args


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _call(row: Sequence[Any]) -> CallRecord:
    call_id, channel, started_at, caller_id, ended_at, reason, metadata, recording = row
    return CallRecord(
        call_id, channel, started_at, caller_id, ended_at, reason, json.loads(metadata), recording
    )


def _turn(row: Sequence[Any]) -> TurnRecord:
    call_id, turn, at, question, reply, sources, handoff, rules, barge_in, timings, backend = row
    return TurnRecord(
        call_id=call_id,
        turn=turn,
        at=at,
        question=question,
        reply=reply,
        sources=tuple(json.loads(sources)),
        handoff=bool(handoff),
        rules=tuple(json.loads(rules)),
        barge_in=bool(barge_in),
        timings_ms=json.loads(timings),
        backend=backend,
    )
