"""The call records and the supervisors on a PostgreSQL server, for several server instances
sharing one database (the SQLite file of `voice.office.store` is for one).

`PostgresStore` implements `voice.office.records.Store` and `PostgresUsers` has the interface of
`voice.office.auth.Users`, with the same promises as their SQLite twins. Both keep a small pool
of connections (`psycopg_pool`), and both bring the schema up to date when they start
(`migrate`).

What PostgreSQL cannot hold is dropped on the way in: NUL characters in text, NaN and infinities
in metadata (stored as null).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, LiteralString, cast

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from text.words import plain_words
from voice.office.auth import (
    SESSION_HOURS,
    Scrypt,
    Users,
)
from voice.office.records import (
    CallAction,
    CallDetail,
    CallQuery,
    CallRecord,
    DayCounts,
    Feedback,
    GapQuestion,
    TurnRecord,
)
from voice.office.store import (
    ADD_ACTION,
    ADD_FEEDBACK,
    CALL_COLUMNS,
    END_CALL,
    NOT_QUESTION_BACKENDS,
    NOT_QUESTIONS,
    ORPHAN_GRACE_S,
    SELECT_ACTIONS,
    SELECT_CALL,
    SELECT_FEEDBACK,
    SELECT_TURNS,
    START_CALL,
    UNANSWERED_RULES,
    UNHELPFUL,
    delete_recording,
    group_gaps,
    sweep_recordings,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
"""How long opening a connection, or waiting for a free one in the pool, may take before
`psycopg.OperationalError` (whole seconds: libpq's `connect_timeout`)."""
MIGRATION_LOCK = 0x766F_6963
"""The `pg_advisory_xact_lock` key that lets one instance at a time migrate the schema."""

MIGRATIONS: tuple[str, ...] = (
    # 1: the call records (voice.office.store.SCHEMA)
    """
    CREATE TABLE calls (
        call_id    text COLLATE "C" PRIMARY KEY,  -- "C": compared and sorted as SQLite does
        channel    text NOT NULL,
        caller_id  text,
        started_at double precision NOT NULL,     -- Unix seconds
        ended_at   double precision,              -- NULL while live
        end_reason text,
        metadata   jsonb NOT NULL DEFAULT '{}',
        recording  text                           -- file name in the recordings folder
    );
    CREATE TABLE turns (
        call_id    text COLLATE "C" NOT NULL,
        turn       integer NOT NULL,
        at         double precision NOT NULL,
        question   text NOT NULL,
        reply      text NOT NULL,
        sources    jsonb NOT NULL DEFAULT '[]',   -- array of str
        handoff    boolean NOT NULL DEFAULT false,
        rules      jsonb NOT NULL DEFAULT '[]',   -- array of str
        barge_in   boolean NOT NULL DEFAULT false,
        timings_ms jsonb NOT NULL DEFAULT '{}',   -- str -> int | null
        backend    text NOT NULL DEFAULT '',
        words      text NOT NULL DEFAULT '',      -- the question's plain words, a newline, the
                                                  -- reply's (text.words.plain_words), for search
        PRIMARY KEY (call_id, turn)
    );
    CREATE TABLE feedback (
        id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        call_id text COLLATE "C" NOT NULL,
        turn    integer NOT NULL,
        helpful boolean NOT NULL,
        at      double precision NOT NULL,
        comment text NOT NULL DEFAULT '',
        UNIQUE (call_id, turn, at)
    );
    CREATE TABLE actions (
        id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- the order they came in
        call_id text COLLATE "C" NOT NULL,
        at      double precision NOT NULL,
        action  text NOT NULL,                    -- waiting, taken, handed_back, ended, missed
        "by"    text NOT NULL DEFAULT '',         -- the supervisor
        detail  text NOT NULL DEFAULT '',
        UNIQUE (call_id, at, action)
    );
    CREATE INDEX calls_started ON calls (started_at);
    CREATE INDEX calls_channel ON calls (channel, started_at);
    CREATE INDEX calls_ended ON calls (ended_at);
    CREATE INDEX turns_at ON turns (at);
    CREATE INDEX turns_handoff ON turns (call_id) WHERE handoff;
    CREATE INDEX actions_call ON actions (call_id, at);
    """,
    # 2: the supervisors (voice.office.auth.SCHEMA)
    """
    CREATE TABLE users (
        name       text COLLATE "C" PRIMARY KEY,
        hash       text NOT NULL,                 -- scrypt$<n>$<r>$<p>$<salt b64>$<key b64>
        created_at double precision NOT NULL
    );
    CREATE TABLE sessions (
        token_sha256 text PRIMARY KEY,            -- hex; the token itself is never stored
        name         text COLLATE "C" NOT NULL,
        created_at   double precision NOT NULL,
        expires_at   double precision NOT NULL
    );
    CREATE INDEX sessions_expiry ON sessions (expires_at);
    CREATE INDEX sessions_name ON sessions (name);
    """,
)
"""The schema, script by script: `MIGRATIONS[v - 1]` takes a database from version v - 1 to v.
Append new scripts; never edit one that has shipped."""


def migrate(url: str) -> int:
    """Bring the database at `url` to the latest schema version; returns the version in place.

    Each pending script runs in a transaction of its own under an advisory lock, so instances
    starting at once apply each script once, and a script that fails leaves the previous version.
    Idempotent. Raises `psycopg.Error` (`psycopg.OperationalError` when the server is down)."""
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        while True:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS voicedesk_schema (version integer)")
                found = conn.execute("SELECT max(version) FROM voicedesk_schema").fetchone()
                version = int(found[0]) if found and found[0] is not None else 0
                if version >= len(MIGRATIONS):
                    break
                conn.execute(MIGRATIONS[version])
                conn.execute("DELETE FROM voicedesk_schema")
                conn.execute("INSERT INTO voicedesk_schema (version) VALUES (%s)", (version + 1,))
            log.info("database schema migrated to version %d", version + 1)
    if version > len(MIGRATIONS):
        log.warning("database schema version %d is newer than this server's", version)
    return version


def _open_pool(url: str, size: int, name: str) -> ConnectionPool:
    """Connections that are not in autocommit mode: each `with pool.connection()` block is one
    transaction, committed at its end (rolled back on an error)."""
    return ConnectionPool(
        url,
        min_size=1,
        max_size=max(size, 1),
        kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
        check=ConnectionPool.check_connection,  # a server restarted: new connections
        timeout=CONNECT_TIMEOUT_S,
        name=name,
        open=True,
    )


class PostgresStore:
    """The call records in PostgreSQL; implements `voice.office.records.Store`.

    Thread-safe: each method borrows a connection from the pool for one transaction. Every
    method waits on the network: call it from a worker thread, never from the event loop.
    Failures raise `psycopg.Error` (`psycopg.OperationalError` while the server is down or the
    pool is closed) or `OSError` (a recording); writes are idempotent, so retrying one that
    failed is safe.

    Args:
        url: The database (a libpq URL or key=value string); its schema is migrated on start.
        recordings_dir: Where the recordings are; `purge` deletes the purged calls' files there.
        pool_size: Connections at most.
    """

    def __init__(self, url: str, recordings_dir: Path | None = None, pool_size: int = 4) -> None:
        self.recordings_dir = recordings_dir
        migrate(url)
        self._pool = _open_pool(url, pool_size, "voicedesk-records")

    @property
    def pool(self) -> ConnectionPool:
        """The connections underneath, for maintenance and tests."""
        return self._pool

    # ------------------------------------------------------------ writes

    def start_call(self, call: CallRecord) -> None:
        """Keep a call; a call started again keeps its end (a retried start applied late)."""
        with self._pool.connection() as db:
            db.execute(
                _placeholders(START_CALL),
                (
                    call.call_id,
                    call.channel,
                    _text(call.caller_id),
                    call.started_at,
                    call.ended_at,
                    _text(call.end_reason),
                    _json(call.metadata),
                    _text(call.recording),
                ),
            )

    def end_call(self, call_id: str, ended_at: float, reason: str, recording: str | None) -> None:
        """Mark a call ended. A call never started is logged and ignored."""
        changed = 0
        if "\x00" not in call_id:  # no call has one, and PostgreSQL's text cannot hold one
            with self._pool.connection() as db:
                changed = db.execute(
                    _placeholders(END_CALL), (ended_at, _text(reason), _text(recording), call_id)
                ).rowcount
        if changed == 0:
            log.warning("end of call %s ignored: it never started, or it has ended", call_id)

    def add_turn(self, turn: TurnRecord) -> None:
        """Keep a turn; a turn kept again (same call and number) replaces the first."""
        question, reply = _text(turn.question) or "", _text(turn.reply) or ""
        with self._pool.connection() as db:
            db.execute(
                "INSERT INTO turns (call_id, turn, at, question, reply, sources, handoff, rules,"
                " barge_in, timings_ms, backend, words)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (call_id, turn) DO UPDATE SET at = excluded.at,"
                " question = excluded.question, reply = excluded.reply,"
                " sources = excluded.sources, handoff = excluded.handoff,"
                " rules = excluded.rules, barge_in = excluded.barge_in,"
                " timings_ms = excluded.timings_ms, backend = excluded.backend,"
                " words = excluded.words",
                (
                    turn.call_id,
                    turn.turn,
                    turn.at,
                    question,
                    reply,
                    _json(list(turn.sources)),
                    turn.handoff,
                    _json(list(turn.rules)),
                    turn.barge_in,
                    _json(turn.timings_ms),
                    _text(turn.backend),
                    f"{_fold(question)}\n{_fold(reply)}",
                ),
            )

    def add_feedback(self, feedback: Feedback) -> None:
        """Keep a verdict on a turn; the latest verdict on a turn is the one that counts."""
        with self._pool.connection() as db:
            db.execute(
                _placeholders(ADD_FEEDBACK),
                (
                    feedback.call_id,
                    feedback.turn,
                    feedback.helpful,
                    feedback.at,
                    _text(feedback.comment),
                ),
            )

    def add_action(self, action: CallAction) -> None:
        """Keep a supervisor's (or the queue's) action on a call."""
        with self._pool.connection() as db:
            db.execute(
                _placeholders(ADD_ACTION),
                (action.call_id, action.at, action.action, _text(action.by), _text(action.detail)),
            )

    def purge(self, before: float) -> int:
        """Delete calls that ended before `before` (Unix seconds) with their turns, feedback and
        recording files, and calls never ended (the server stopped mid-call) that started
        `ORPHAN_GRACE_S` before that, with recording files no call names, as old.

        Returns how many calls were deleted. A recording file that cannot be deleted is logged
        and left; the rows go anyway."""
        with self._pool.connection() as db:
            doomed = db.execute(
                "DELETE FROM calls WHERE ended_at < %s OR (ended_at IS NULL AND started_at < %s)"
                " RETURNING call_id, recording",
                (before, before - ORPHAN_GRACE_S),
            ).fetchall()
            call_ids = [call_id for call_id, _ in doomed]
            for table in ("turns", "feedback", "actions"):
                db.execute(f"DELETE FROM {table} WHERE call_id = ANY(%s)", (call_ids,))
            db.execute(
                "DELETE FROM feedback f WHERE f.at < %s"
                " AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.call_id = f.call_id)",
                (before,),
            )
        for _, recording in doomed:
            delete_recording(self.recordings_dir, recording)
        sweep_recordings(self.recordings_dir, before - ORPHAN_GRACE_S, self._named_recordings)
        return len(doomed)

    def _named_recordings(self) -> list[str]:
        with self._pool.connection() as db:
            rows = db.execute("SELECT recording FROM calls WHERE recording != ''").fetchall()
        return [name for (name,) in rows]

    # ------------------------------------------------------------ reads

    def calls(self, query: CallQuery) -> list[CallRecord]:
        """The calls that match, newest first."""
        where, args = _call_filter(query)
        with self._pool.connection() as db:
            rows = db.execute(
                f"SELECT {CALL_COLUMNS} FROM calls c WHERE {where}"
                " ORDER BY c.started_at DESC, c.call_id DESC LIMIT %s OFFSET %s",
                [*args, max(query.limit, 0), max(query.offset, 0)],
            ).fetchall()
        return [_call(row) for row in rows]

    def call(self, call_id: str) -> CallDetail | None:
        """One call with its turns (in order), feedback and actions (oldest first, then in the
        order they came); None if unknown."""
        if "\x00" in call_id:  # no call has one, and PostgreSQL's text cannot hold one
            return None
        with self._pool.connection() as db:
            found = db.execute(_placeholders(SELECT_CALL), (call_id,)).fetchone()
            if found is None:
                return None
            turns = db.execute(_placeholders(SELECT_TURNS), (call_id,)).fetchall()
            feedback = db.execute(_placeholders(SELECT_FEEDBACK), (call_id,)).fetchall()
            order = SELECT_ACTIONS.format(tiebreak="id")
            actions = db.execute(_placeholders(order), (call_id,)).fetchall()
        return CallDetail(
            call=_call(found),
            turns=tuple(_turn(row) for row in turns),
            feedback=tuple(Feedback(*row) for row in feedback),
            actions=tuple(CallAction(*row) for row in actions),
        )

    def gaps(self, since: float, limit: int = 20) -> list[GapQuestion]:
        """The questions asked since `since` that were handed off, unanswered (an empty reply,
        or a rule of UNANSWERED_RULES: out of scope, asked again) or last marked unhelpful,
        grouped by `normalize_question`, most frequent first. Each group shows its latest
        wording. Asking for a person (NOT_QUESTIONS) and keypad digits are no questions."""
        with self._pool.connection() as db:
            rows = db.execute(
                f"SELECT t.question, t.at, t.handoff, ({UNHELPFUL}) AS unhelpful FROM turns t"
                f" WHERE t.at >= %s AND t.question != '' AND NOT {_NOT_A_QUESTION}"
                f" AND (t.handoff OR trim(t.reply) = '' OR {_OUT_OF_SCOPE} OR ({UNHELPFUL}))"
                " ORDER BY t.at, t.call_id, t.turn",
                (since,),
            ).fetchall()
        return group_gaps(rows, limit)

    def daily(self, since: float) -> list[DayCounts]:
        """Turns since `since` per UTC day, oldest first: answered (a reply, not handed off, not
        out of scope), handed off, and last marked unhelpful (these overlap the other two)."""
        with self._pool.connection() as db:
            rows = db.execute(
                f"SELECT {_DAY} AS day,"
                " count(*) FILTER (WHERE NOT t.handoff AND trim(t.reply) != ''"
                f" AND NOT {_OUT_OF_SCOPE}),"
                f" count(*) FILTER (WHERE t.handoff), count(*) FILTER (WHERE ({UNHELPFUL}))"
                " FROM turns t WHERE t.at >= %s GROUP BY day ORDER BY day",
                (since,),
            ).fetchall()
        return [DayCounts(day, int(a), int(h), int(u)) for day, a, h, u in rows]

    def close(self) -> None:
        self._pool.close()


class PoolTables:
    """`voice.office.auth.Tables` in PostgreSQL: each call one transaction on a connection of
    `pool`; the `?` placeholders become psycopg's."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.pool.connection() as db:
            return db.execute(_placeholders(sql), args).fetchall()

    def write(self, *statements: tuple[str, tuple[Any, ...]]) -> list[int]:
        with self.pool.connection() as db:
            return [db.execute(_placeholders(sql), args).rowcount for sql, args in statements]

    def close(self) -> None:
        self.pool.close()


def _placeholders(sql: str) -> LiteralString:
    """SQL written for SQLite (`?`) as psycopg takes it (`%s`); no `?` or `%` is quoted in it."""
    return cast(LiteralString, sql.replace("?", "%s"))


class PostgresUsers(Users):
    """The supervisors and their sessions in the records database: `voice.office.auth.Users`
    on PostgreSQL (database failures raise `psycopg.Error`).

    Args:
        url: The database; its schema is migrated on start.
        session_hours: How long a login lasts.
        clock: Unix time in seconds; tests pass their own.
        kdf: The cost of new hashes; existing hashes keep the cost stored with them.
        pool_size: Connections at most.
    """

    def __init__(
        self,
        url: str,
        session_hours: float = SESSION_HOURS,
        clock: Callable[[], float] = time.time,
        kdf: Scrypt | None = None,
        pool_size: int = 2,
    ) -> None:
        migrate(url)
        self.pool = _open_pool(url, pool_size, "voicedesk-users")
        super().__init__(PoolTables(self.pool), session_hours, clock, kdf)


# ---------------------------------------------------------------- SQL

_DAY = (  # as SQLite's date(t.at, 'unixepoch'), which first rounds to the millisecond
    "to_char(date '1970-01-01' + floor((t.at * 1000 + 0.5) / 86400000)::integer, 'YYYY-MM-DD')"
)


def _array(names: tuple[str, ...]) -> str:
    """SQL: the literal text array of `names` (constants, no quotes in them)."""
    assert not any("'" in name for name in names)
    return "array[" + ", ".join(f"'{name}'" for name in names) + "]"


_OUT_OF_SCOPE = f"t.rules ?| {_array(UNANSWERED_RULES)}"
_NOT_A_QUESTION = (
    f"(t.rules ?| {_array(NOT_QUESTIONS)} OR t.backend = ANY({_array(NOT_QUESTION_BACKENDS)}))"
)


def _call_filter(query: CallQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (over `calls c`) and its arguments for a query."""
    where, args = ["true"], list[Any]()
    if query.since is not None:
        where.append("c.started_at >= %s")
        args.append(query.since)
    if query.until is not None:
        where.append("c.started_at < %s")
        args.append(query.until)
    if query.channel is not None:
        where.append("c.channel = %s")
        args.append(_text(query.channel))
    turn = "EXISTS (SELECT 1 FROM turns t WHERE t.call_id = c.call_id AND {})"
    if query.handoff is not None:
        where.append(("" if query.handoff else "NOT ") + turn.format("t.handoff"))
    if query.rule == "*":
        where.append(turn.format("jsonb_array_length(t.rules) > 0"))
    elif query.rule is not None:
        where.append(turn.format("t.rules ? %s"))
        args.append(_text(query.rule))
    for word in plain_words(query.text or ""):  # as `_fold` wrote the stored words
        where.append(turn.format("strpos(t.words, %s) > 0"))
        args.append(word)
    return " AND ".join(where), args


# ---------------------------------------------------------------- values


def _fold(text: str) -> str:
    """The words of `text` as searches compare them, one space apart (as SQLite's `fold`)."""
    return " ".join(plain_words(text))


def _text(text: str | None) -> str | None:
    """`text` without NUL characters, which PostgreSQL's text cannot hold."""
    return text.replace("\x00", "") if text else text


def _json(value: Any) -> Jsonb:
    return Jsonb(value, dumps=_dumps)


def _dumps(value: Any) -> str:
    """JSON as the SQLite store writes it, less what jsonb refuses: NUL characters are dropped,
    NaN and infinities become null."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if "\\u0000" in text or "NaN" in text or "Infinity" in text:
        text = json.dumps(_storable(json.loads(text)), ensure_ascii=False, allow_nan=False)
    return text


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value


def _call(row: Sequence[Any]) -> CallRecord:
    call_id, channel, started_at, caller_id, ended_at, reason, metadata, recording = row
    return CallRecord(
        call_id, channel, started_at, caller_id, ended_at, reason, metadata, recording
    )


def _turn(row: Sequence[Any]) -> TurnRecord:
    call_id, turn, at, question, reply, sources, handoff, rules, barge_in, timings, backend = row
    return TurnRecord(
        call_id=call_id,
        turn=turn,
        at=at,
        question=question,
        reply=reply,
        sources=tuple(sources),
        handoff=handoff,
        rules=tuple(rules),
        barge_in=barge_in,
        timings_ms=timings,
        backend=backend,
    )
