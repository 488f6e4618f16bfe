"""The call records: round trips, history filters, gap reports and retention, on SQLite and on
PostgreSQL alike, and the spool that keeps calls going through a locked or full database without
losing a record."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.postgres import empty_postgres_url, postgres_url, rows  # noqa: F401 (fixtures)
from voice.office.postgres import PostgresStore
from voice.office.records import (
    CallDetail,
    CallQuery,
    CallRecord,
    DayCounts,
    Feedback,
    Store,
    TurnRecord,
)
from voice.office.store import SpooledStore, SqliteStore, normalize_question

DAY = 86400.0
T0 = 1_700_000_000.0
"""2023-11-14 22:13:20 UTC."""


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each kind of store, empty, its recordings in `tmp_path / "recordings"`."""
    store: Store
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "voicedesk.db", recordings_dir=tmp_path / "recordings")
    else:
        url = request.getfixturevalue("empty_postgres_url")
        store = PostgresStore(url, recordings_dir=tmp_path / "recordings")
    yield store
    store.close()


def call(call_id: str, at: float = T0, **fields: Any) -> CallRecord:
    return CallRecord(
        call_id=call_id, channel=fields.pop("channel", "call"), started_at=at, **fields
    )


def turn(call_id: str, number: int, at: float = T0, **fields: Any) -> TurnRecord:
    fields.setdefault("question", f"question {number}")
    fields.setdefault("reply", f"reply {number}")
    return TurnRecord(call_id=call_id, turn=number, at=at, **fields)


# ----------------------------------------------------------------------------- round trips


def test_every_field_round_trips(store: Store) -> None:
    started = call(
        "c1",
        T0 + 0.25,
        channel="phone",
        caller_id="+44 [phone]",
        metadata={"twilio": {"sid": "CA1"}, "tags": ["vip"], "n": 3},
    )
    turns = (
        TurnRecord(
            call_id="c1",
            turn=1,
            at=T0 + 3.5,
            question="Ça marche, le Wi-Fi 6 ? «oui»",
            reply="Yes — it supports Wi-Fi 6.",
            sources=("router.md#wifi", "faq.md"),
            handoff=True,
            rules=("out_of_scope", "pii"),
            barge_in=True,
            timings_ms={"asr": 120, "first_audio": 640, "llm": None},
            backend="ollama",
        ),
        turn("c1", 2, T0 + 9.0),
    )
    feedback = (
        Feedback("c1", 1, helpful=False, at=T0 + 20, comment="wrong router"),
        Feedback("c1", 2, helpful=True, at=T0 + 21),
    )
    store.start_call(started)
    for t in turns:
        store.add_turn(t)
    for f in feedback:
        store.add_feedback(f)
    store.end_call("c1", T0 + 30.5, "hangup", "c1.wav")

    ended = dataclasses.replace(
        started, ended_at=T0 + 30.5, end_reason="hangup", recording="c1.wav"
    )
    assert store.call("c1") == CallDetail(call=ended, turns=turns, feedback=feedback)
    assert store.calls(CallQuery()) == [ended]


def test_unknown_call_is_none(store: Store) -> None:
    assert store.call("nope") is None
    store.end_call("nope", T0, "hangup", None)  # logged, ignored
    assert store.calls(CallQuery()) == []


def test_writes_repeated_by_a_retry_change_nothing(store: Store) -> None:
    for _ in range(2):
        store.start_call(call("c1"))
        store.add_turn(turn("c1", 1, reply="first"))
        store.add_feedback(Feedback("c1", 1, helpful=True, at=T0))
    store.add_turn(turn("c1", 1, reply="second"))
    detail = store.call("c1")
    assert detail is not None
    assert [t.reply for t in detail.turns] == ["second"]
    assert len(detail.feedback) == 1


def test_a_call_ends_once(store: Store) -> None:
    """A server that ends as lost a call whose own end reached the records changes nothing."""
    store.start_call(call("c1"))
    store.end_call("c1", T0 + 5, "hangup", "c1.wav")
    store.end_call("c1", T0 + 20, "server_lost", None)
    detail = store.call("c1")
    assert detail is not None
    assert (detail.call.ended_at, detail.call.end_reason, detail.call.recording) == (
        T0 + 5,
        "hangup",
        "c1.wav",
    )


def test_a_call_ended_as_lost_takes_its_own_end_when_it_comes(store: Store) -> None:
    """Its server was cut off from the others, not gone: the call went on and ended."""
    store.start_call(call("c1"))
    store.end_call("c1", T0 + 20, "server_lost", None)
    store.end_call("c1", T0 + 60, "hangup", "c1.wav")
    detail = store.call("c1")
    assert detail is not None
    assert (detail.call.end_reason, detail.call.recording) == ("hangup", "c1.wav")


def test_a_restart_during_a_call_keeps_its_end(store: Store) -> None:
    store.start_call(call("c1"))
    store.end_call("c1", T0 + 5, "hangup", None)
    store.start_call(call("c1", channel="kiosk"))  # a retried start, applied late
    detail = store.call("c1")
    assert detail is not None and detail.call.ended_at == T0 + 5


# ----------------------------------------------------------------------------- history filters


@pytest.fixture
def history(store: Store) -> Store:
    """a: phone, day 0, handed off, out of scope; b: kiosk, day 1, profanity rule;
    c: call, day 2, nothing special; d: text, day 3, live, no turns."""
    store.start_call(call("a", T0, channel="phone"))
    store.add_turn(turn("a", 1, T0, question="Can I pay with PayPal?", reply="", handoff=True))
    store.add_turn(turn("a", 2, T0, question="Hello", reply="Hi", rules=("out_of_scope",)))
    store.start_call(call("b", T0 + DAY, channel="kiosk"))
    store.add_turn(turn("b", 1, T0 + DAY, question="I want a REFUND", rules=("profanity",)))
    store.start_call(call("c", T0 + 2 * DAY))
    store.add_turn(turn("c", 1, T0 + 2 * DAY, question="Where is my order?", reply="Straße 5"))
    store.start_call(call("d", T0 + 3 * DAY, channel="text"))
    return store


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (CallQuery(), "dcba"),
        (CallQuery(since=T0 + DAY), "dcb"),
        (CallQuery(until=T0 + DAY), "a"),
        (CallQuery(since=T0 + DAY, until=T0 + 3 * DAY), "cb"),
        (CallQuery(channel="kiosk"), "b"),
        (CallQuery(channel="phone"), "a"),
        (CallQuery(handoff=True), "a"),
        (CallQuery(handoff=False), "dcb"),
        (CallQuery(rule="*"), "ba"),
        (CallQuery(rule="profanity"), "b"),
        (CallQuery(rule="out_of_scope"), "a"),
        (CallQuery(rule="nope"), ""),
        (CallQuery(text="refund"), "b"),
        (CallQuery(text="ORDER where"), "c"),
        (CallQuery(text="order refund"), ""),
        (CallQuery(text="STRASSE"), "c"),
        (CallQuery(text="paypal"), "a"),
        (CallQuery(text="hi"), "a"),
        (CallQuery(text="100%"), ""),
        (CallQuery(limit=2), "dc"),
        (CallQuery(limit=2, offset=2), "ba"),
        (CallQuery(channel="call", handoff=False, text="order"), "c"),
    ],
)
def test_filters(history: Store, query: CallQuery, expected: str) -> None:
    assert "".join(c.call_id for c in history.calls(query)) == expected


# ----------------------------------------------------------------------------- gaps and days


def test_search_compares_words_not_punctuation(store: Store) -> None:
    """The search words and the stored text go through the same `text.words.plain_words`."""
    store.start_call(call("a"))
    store.add_turn(turn("a", 1, question="What's the Wi-Fi password?", reply="It's on the router."))
    searches = {"whats": "a", "wi-fi": "a", "it's": "a", "router.": "a", "wifi": ""}
    for text, found in searches.items():
        assert "".join(c.call_id for c in store.calls(CallQuery(text=text))) == found, text


def test_normalized_questions() -> None:
    assert normalize_question("  Can I pay with PayPal??  ") == "can i pay with paypal"
    assert normalize_question("Can I  pay, with PAYPAL!") == "can i pay with paypal"
    assert normalize_question("¿Dónde está?") == "dónde está"


def test_gaps(store: Store) -> None:
    store.start_call(call("a"))
    asked = [
        # (question, reply, handoff, rules, at): the problems
        ("Can I pay with PayPal?", "", True, (), T0 + 10),
        ("can i pay with paypal", "Let me get someone.", True, (), T0 + 20),
        ("Can I pay with PayPal??", "I can't answer that.", False, ("out_of_scope",), T0 + 30),
        ("Do you ship to Mars?", "", False, (), T0 + 40),
        ("What are your hours?", "9 to 5.", False, (), T0 + 50),
        # answered well, or before the report's start
        ("Where is my order?", "On its way.", False, ("profanity",), T0 + 60),
        ("Is it waterproof?", "Yes.", False, (), T0 + 70),
        ("Old question?", "", True, (), T0 - DAY),
        ("", "", True, (), T0 + 80),
    ]
    for number, (question, reply, handoff, rules, at) in enumerate(asked, 1):
        store.add_turn(
            turn("a", number, at, question=question, reply=reply, handoff=handoff, rules=rules)
        )
    store.add_feedback(Feedback("a", 5, helpful=False, at=T0 + 100))  # hours: unhelpful
    store.add_feedback(Feedback("a", 7, helpful=False, at=T0 + 100))  # waterproof: unhelpful...
    store.add_feedback(Feedback("a", 7, helpful=True, at=T0 + 101))  # ...then helpful after all
    store.add_feedback(Feedback("a", 2, helpful=False, at=T0 + 102))

    gaps = store.gaps(since=T0)
    assert [(g.question, g.count, g.handed_off, g.unhelpful, g.last_at) for g in gaps] == [
        ("Can I pay with PayPal??", 3, 2, 1, T0 + 30),
        ("What are your hours?", 1, 0, 1, T0 + 50),
        ("Do you ship to Mars?", 1, 0, 0, T0 + 40),
    ]
    assert len(store.gaps(since=T0, limit=1)) == 1
    assert store.gaps(since=T0 + 1000) == []


def test_a_question_asked_again_is_a_gap_though_nothing_was_handed_off(
    store: Store,
) -> None:
    store.start_call(call("a"))
    rephrase = "Sorry, I'm not sure I understood. Could you say that another way?"
    asked = [
        ("Do you do braces?", rephrase, ("clarify",)),
        ("Whats the whether?", rephrase, ("not_understood",)),
        ("The light?", "Just to be sure: is it about orange light, or red light?", ("clarify",)),
        ("The orange one.", "An orange light means the battery is low.", ()),
    ]
    for number, (question, reply, rules) in enumerate(asked, 1):
        store.add_turn(turn("a", number, T0 + number, question=question, reply=reply, rules=rules))
    gaps = store.gaps(since=T0)
    assert sorted((g.question, g.count, g.handed_off) for g in gaps) == [
        ("Do you do braces?", 1, 0),
        ("The light?", 1, 0),
        ("Whats the whether?", 1, 0),
    ]
    (day,) = store.daily(since=T0)
    assert (day.answered, day.handed_off) == (1, 0)


def test_daily_counts(store: Store) -> None:
    store.start_call(call("a"))
    day1, day2 = 1_700_006_400.0, 1_700_092_800.0  # 2023-11-15 and -16, 00:00 UTC
    rows = [
        (day1 + 1, "Sure.", False, ()),  # answered
        (day1 + 2, "Sure.", False, ()),  # answered, marked unhelpful
        (day1 + 3, "One moment.", True, ()),  # handed off
        (day1 - 1, "Sure.", False, ()),  # the day before: answered
        (day2 + 5, "", False, ()),  # unanswered: none of the three
        (day2 + 6, "I can't help.", False, ("out_of_scope",)),  # unanswered too
        (day2 + 7, "Yes.", False, ("profanity",)),  # answered
    ]
    for number, (at, reply, handoff, rules) in enumerate(rows, 1):
        store.add_turn(turn("a", number, at, reply=reply, handoff=handoff, rules=rules))
    store.add_feedback(Feedback("a", 2, helpful=False, at=day2))
    assert store.daily(since=day1) == [
        DayCounts("2023-11-15", answered=2, handed_off=1, unhelpful=1),
        DayCounts("2023-11-16", answered=1, handed_off=0, unhelpful=0),
    ]
    assert store.daily(since=day1 - 10)[0] == DayCounts("2023-11-14", 1, 0, 0)


# ----------------------------------------------------------------------------- retention


def test_purge_removes_old_calls_with_their_turns_feedback_and_recordings(
    store: Store, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    cutoff = T0
    kept = {
        "recent": (cutoff - DAY, cutoff + 1),  # started before, ended after the cut-off
        "live": (cutoff + 10, None),
        "live-long": (cutoff - 3600, None),  # not ended, but within the grace for live calls
    }
    gone = {"old": (cutoff - 2 * DAY, cutoff - DAY), "orphan": (cutoff - 3 * DAY, None)}
    for call_id, (started, ended) in {**kept, **gone}.items():
        store.start_call(call(call_id, started))
        store.add_turn(turn(call_id, 1, started))
        store.add_feedback(Feedback(call_id, 1, helpful=False, at=started))
        (recordings / f"{call_id}.wav").write_bytes(b"RIFF")
        os.utime(recordings / f"{call_id}.wav", (started, started))
        if ended is not None:
            store.end_call(call_id, ended, "hangup", f"{call_id}.wav")
    store.add_feedback(Feedback("never-was", 1, helpful=False, at=cutoff - DAY))
    (recordings / "stray.wav").write_bytes(b"RIFF")  # new: perhaps a call starting now

    assert store.purge(before=cutoff) == 2
    assert store.purge(before=cutoff) == 0

    for call_id in kept:
        detail = store.call(call_id)
        assert detail is not None and len(detail.turns) == 1 and len(detail.feedback) == 1
    assert {c.call_id for c in store.calls(CallQuery())} == set(kept)
    # a live call's file is not named in its row yet: its age keeps it, as for a call's rows
    on_disk = sorted(p.name for p in recordings.iterdir())
    assert on_disk == ["live-long.wav", "live.wav", "recent.wav", "stray.wav"]
    remaining = rows(store, "SELECT call_id FROM feedback")
    assert sorted(r[0] for r in remaining) == sorted(kept)


def test_store_is_usable_from_many_threads(store: Store) -> None:
    store.start_call(call("a"))

    def work(number: int) -> int:
        store.add_turn(turn("a", number))
        store.calls(CallQuery(text="question"))
        detail = store.call("a")
        return len(detail.turns) if detail else 0

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(1, 81)))
    detail = store.call("a")
    assert detail is not None and [t.turn for t in detail.turns] == list(range(1, 81))


# ----------------------------------------------------------------------------- the spool


class FlakyStore:
    """Passes calls to a real store, but the next `failures` writes raise `error` first."""

    def __init__(self, inner: Store, failures: int, error: Exception) -> None:
        self.inner = inner
        self.failures = failures
        self.error = error
        self.attempts = 0
        self.applied: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in ("start_call", "end_call", "add_turn", "add_feedback"):
            return method

        def write(*args: Any) -> None:
            self.attempts += 1
            if self.failures > 0:
                self.failures -= 1
                raise self.error
            method(*args)
            self.applied.append((name, args[0]))

        return write


def fast(inner: Any, **options: Any) -> SpooledStore:
    """A spool that retries every 10 to 50 ms."""
    return SpooledStore(inner, retry_min_s=0.01, retry_max_s=0.05, **options)


def a_call(spool: SpooledStore, call_id: str, turns: int) -> list[tuple[str, Any]]:
    """What a call writes, from the calling thread as the event loop would; each write must come
    back at once (that none waits on a store stuck for good is
    `test_spool_logs_the_backlog_as_it_grows`). Returns the writes in order."""
    writes: list[tuple[str, Any]] = [("start_call", call(call_id))]
    writes += [("add_turn", turn(call_id, n, question="q" * 100)) for n in range(1, turns + 1)]
    writes += [("add_feedback", Feedback(call_id, 1, helpful=False, at=T0 + 9))]
    for name, record in writes:
        started = time.perf_counter()
        getattr(spool, name)(record)
        assert time.perf_counter() - started < 1.0, "a write waited on the store"
    started = time.perf_counter()
    spool.end_call(call_id, T0 + 60, "hangup", None)
    assert time.perf_counter() - started < 1.0
    return [*writes, ("end_call", call_id)]


def assert_all_kept(store: Store, call_id: str, turns: int) -> None:
    detail = store.call(call_id)
    assert detail is not None
    assert detail.call.end_reason == "hangup"
    assert [t.turn for t in detail.turns] == list(range(1, turns + 1))
    assert len(detail.feedback) == 1


@pytest.mark.parametrize(
    "error",
    [sqlite3.OperationalError("database is locked"), OSError(errno.ENOSPC, "No space left")],
    ids=["locked", "disk-full"],
)
def test_spool_outlasts_a_failing_store_in_order(
    store: Store, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(store, failures=6, error=error)
    spool = fast(flaky)
    writes = a_call(spool, "c1", turns=20)
    assert spool.flush(timeout=10)
    assert flaky.attempts == len(writes) + 6
    assert flaky.applied == writes  # in order, none lost, none twice
    assert_all_kept(store, "c1", turns=20)
    failures = [r for r in caplog.records if "store write failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR  # once per outage
    assert any("store recovered" in r.getMessage() for r in caplog.records)
    assert not spool.failing
    spool.close()


def test_spool_outlasts_a_really_locked_database(tmp_path: Path) -> None:
    path = tmp_path / "voicedesk.db"
    store = SqliteStore(path, busy_timeout_ms=20)
    spool = fast(store)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        a_call(spool, "c1", turns=10)
        deadline = time.monotonic() + 5
        while not spool.failing and time.monotonic() < deadline:
            time.sleep(0.01)
        assert spool.failing and spool.pending == 13
        with pytest.raises(sqlite3.OperationalError):
            store.add_turn(turn("c1", 99))  # what the spool met
    finally:
        other.execute("COMMIT")
        other.close()
    assert spool.flush(timeout=10)
    assert_all_kept(store, "c1", turns=10)
    spool.close()


class FullDisk(SqliteStore):
    """A real SQLITE_FULL ("database or disk is full"): while `full`, the database may not grow
    by a page (`PRAGMA max_page_count`, set on the connection that writes)."""

    full = True

    def add_turn(self, turn: TurnRecord) -> None:
        limit = 1 if self.full else 1 << 30  # sqlite raises a limit under the size to the size
        self.database.connection().execute(f"PRAGMA max_page_count = {limit}")
        super().add_turn(turn)


def test_spool_outlasts_a_really_full_disk(tmp_path: Path) -> None:
    store = FullDisk(tmp_path / "voicedesk.db")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.add_turn(turn("c0", 1, question="x" * 20_000))
    spool = fast(store)
    spool.start_call(call("c1"))
    for number in range(1, 6):
        spool.add_turn(turn("c1", number, question=f"{number}" * 20_000))  # needs new pages
    spool.end_call("c1", T0 + 60, "hangup", None)
    deadline = time.monotonic() + 10
    while not spool.failing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert spool.failing and spool.pending == 6
    store.full = False  # space freed
    assert spool.flush(timeout=10)
    detail = store.call("c1")
    assert detail is not None and detail.call.end_reason == "hangup"
    assert [t.question[:1] for t in detail.turns] == ["1", "2", "3", "4", "5"]
    spool.close()


def test_a_write_that_can_never_succeed_is_set_aside(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(store, failures=3, error=ValueError("a bug"))
    spool = fast(flaky, max_attempts=3)
    spool.start_call(call("bad"))
    spool.start_call(call("good"))
    assert spool.flush(timeout=10)
    assert [w.args[0].call_id for w in spool.failed] == ["bad"]
    assert [c.call_id for c in store.calls(CallQuery())] == ["good"]
    assert any("set aside" in r.getMessage() for r in caplog.records)
    spool.close()


def test_reads_go_straight_through_and_raise_while_down(store: Store) -> None:
    spool = fast(store)
    spool.start_call(call("c1"))
    assert spool.flush(timeout=5)
    assert [c.call_id for c in spool.calls(CallQuery())] == ["c1"]
    assert spool.call("c1") is not None
    assert spool.gaps(since=0) == [] and spool.daily(since=0) == []
    assert spool.purge(before=0) == 0
    spool.close()
    closed = (
        sqlite3.ProgrammingError if isinstance(store, SqliteStore) else psycopg.OperationalError
    )
    with pytest.raises(closed):
        spool.calls(CallQuery())  # closed: the console answers 503


def test_close_gives_up_on_a_dead_store_and_says_what_was_lost(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(store, failures=1_000_000, error=OSError(errno.EIO, "I/O error"))
    spool = fast(flaky)
    spool.start_call(call("c1"))
    spool.add_turn(turn("c1", 1))
    started = time.monotonic()
    spool.close(timeout=0.2)
    assert time.monotonic() - started < 3
    lost = [r for r in caplog.records if "record lost" in r.getMessage()]
    assert len(lost) == 2
    spool.add_turn(turn("c1", 2))  # after close: logged, not raised
    assert any("store closed" in r.getMessage() for r in caplog.records)


def test_spool_logs_the_backlog_as_it_grows(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()

    class Slow:
        def __getattr__(self, name: str) -> Any:
            gate.wait(60)
            return getattr(store, name)

    spool = SpooledStore(Slow(), warn_every=10)  # type: ignore[arg-type]

    def a_call_writes() -> None:
        for number in range(1, 26):
            spool.add_turn(turn("c1", number))

    writer = threading.Thread(target=a_call_writes)
    writer.start()
    writer.join(10)
    waited = writer.is_alive()
    gate.set()
    writer.join()
    assert not waited, "a write waited on the stuck store"
    backlog = [r for r in caplog.records if "wait in memory" in r.getMessage()]
    assert len(backlog) == 2
    assert spool.flush(timeout=10)
    detail = store.call("c1")
    assert detail is None  # turns of a call never started are kept, but no call row
    assert rows(store, "SELECT count(*) FROM turns") == [(25,)]
    spool.close()


def test_an_outage_keeps_a_bounded_number_of_writes_dropping_the_oldest(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    down = FlakyStore(store, failures=10**9, error=sqlite3.OperationalError("disk I/O error"))
    spool = fast(down, max_queued=50)
    spool.start_call(call("c1"))
    for number in range(1, 500):  # a flood while the store is down
        spool.add_feedback(Feedback("c1", number, helpful=False, at=T0 + number))
    assert spool.pending == 50 and spool.dropped == 450
    assert any("dropped so far" in r.getMessage() for r in caplog.records)
    down.failures = 0  # the store is back
    assert spool.flush(timeout=10)
    detail = store.call("c1")
    assert detail is not None, "the write being retried was kept"
    assert [f.turn for f in detail.feedback] == list(range(451, 500)), "the newest were kept"
    spool.close()
