"""What only the PostgreSQL store and logins do: schema migrations, several instances at once,
a server that drops connections or cannot be reached, what PostgreSQL cannot hold, and the same
answers as the SQLite store on the same records. (The behaviour both share is checked on both by
tests/office/test_store.py and test_auth.py.)"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.postgres import (  # noqa: F401 (fixtures)
    ADMIN_URL,
    empty_postgres_url,
    fresh_database,
    postgres_url,
    rows,
)
from voice.office import postgres
from voice.office.auth import Scrypt
from voice.office.postgres import MIGRATIONS, PostgresStore, PostgresUsers, migrate
from voice.office.records import CallAction, CallQuery, CallRecord, Feedback, TurnRecord
from voice.office.store import SqliteStore

T0 = 1_700_000_000.0
DAY = 86400.0
QUICK = Scrypt(n=2**10)


@pytest.fixture
def store(empty_postgres_url: str, tmp_path: Path) -> Iterator[PostgresStore]:  # noqa: F811
    store = PostgresStore(empty_postgres_url, recordings_dir=tmp_path / "recordings")
    yield store
    store.close()


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in found}


def schema_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version FROM voicedesk_schema").fetchall()


# ----------------------------------------------------------------------------- migrations


def test_migrate_twice_keeps_the_version() -> None:
    with fresh_database() as url:
        assert migrate(url) == len(MIGRATIONS) == 2
        assert migrate(url) == len(MIGRATIONS)
        assert schema_rows(url) == [(len(MIGRATIONS),)]
        assert {"calls", "turns", "feedback", "actions", "users", "sessions"} <= tables(url)


def test_migrate_applies_only_the_scripts_not_yet_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_database() as url:
        with monkeypatch.context() as older:
            older.setattr(postgres, "MIGRATIONS", MIGRATIONS[:1])  # an older server
            assert migrate(url) == 1
        assert "calls" in tables(url) and "users" not in tables(url)
        assert migrate(url) == 2  # a newer one: script 1 is not run again (it would fail)
        assert "users" in tables(url)
        assert schema_rows(url) == [(2,)]


def test_instances_starting_at_once_migrate_once() -> None:
    with fresh_database() as url:
        start = threading.Barrier(4)

        def an_instance(_: int) -> int:
            start.wait(10)
            return migrate(url)

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(an_instance, range(4))) == [len(MIGRATIONS)] * 4
        assert schema_rows(url) == [(len(MIGRATIONS),)]


def test_a_failed_script_leaves_the_version_before(monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_database() as url:
        monkeypatch.setattr(postgres, "MIGRATIONS", (*MIGRATIONS, "CREATE TABLE calls ();"))
        with pytest.raises(psycopg.errors.DuplicateTable):
            migrate(url)
        assert schema_rows(url) == [(len(MIGRATIONS),)]


# ----------------------------------------------------------------------------- the server


def test_a_server_that_cannot_be_reached_raises_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        PostgresStore("postgresql://postgres@127.0.0.1:1/voicedesk")
    with pytest.raises(psycopg.OperationalError):
        PostgresUsers("postgresql://postgres@127.0.0.1:1/voicedesk")
    assert time.monotonic() - started < 2 * postgres.CONNECT_TIMEOUT_S


def test_connections_the_server_dropped_are_replaced(
    store: PostgresStore,
    postgres_url: str,  # noqa: F811
) -> None:
    """A restarted server (here: every connection of the store's terminated) costs nothing but
    new connections."""
    store.start_call(CallRecord("c1", "call", T0))
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (postgres_url.rsplit("/", 1)[1],),
        ).fetchall()
    assert killed, "the store keeps a connection open"
    store.add_turn(TurnRecord("c1", 1, T0, "question", "reply"))
    assert [c.call_id for c in store.calls(CallQuery(text="question"))] == ["c1"]


def test_instances_writing_the_same_records_at_once_keep_each_once(
    empty_postgres_url: str,  # noqa: F811
) -> None:
    """Writes are idempotent across instances too: a record two servers (or a retry) write at
    the same moment is kept once."""
    instances = [PostgresStore(empty_postgres_url) for _ in range(2)]

    def write(number: int) -> None:
        store = instances[number % 2]
        store.start_call(CallRecord("c1", "call", T0))
        store.add_turn(TurnRecord("c1", number // 2, T0, "question", f"reply {number}"))
        store.add_feedback(Feedback("c1", number // 2, helpful=True, at=T0))
        store.add_action(CallAction("c1", T0, "taken", by="alice"))

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, range(40)))
        detail = instances[0].call("c1")
        assert detail is not None
        assert [t.turn for t in detail.turns] == list(range(20))
        assert sorted(f.turn for f in detail.feedback) == list(range(20))  # at the same `at`
        assert len(detail.actions) == 1
    finally:
        for store in instances:
            store.close()


def test_users_share_the_records_database(empty_postgres_url: str) -> None:  # noqa: F811
    store = PostgresStore(empty_postgres_url)
    users = PostgresUsers(empty_postgres_url, kdf=QUICK)
    users.add("alice", "password-1")
    again = PostgresUsers(empty_postgres_url, kdf=QUICK)  # `voicedesk user add` while serving
    assert again.list() == ["alice"]
    with pytest.raises(ValueError, match="exists already"):
        again.add("alice", "password-2")
    token = again.login("alice", "password-1")
    assert token is not None and users.user_for(token) == "alice"
    for closing in (store, users, again):
        closing.close()


# ----------------------------------------------------------------------------- NUL, NaN


def test_nul_characters_and_nan_are_dropped_not_refused(store: PostgresStore) -> None:
    metadata = {"a\x00": ["b\x00"], "x": math.nan}
    store.start_call(CallRecord("c1", "call", T0, caller_id="+1\x00", metadata=metadata))
    store.add_turn(
        TurnRecord("c1", 1, T0, "Wi\x00Fi?", "ok\x00", rules=("pii\x00",), timings_ms={"asr": 1})
    )
    store.add_feedback(Feedback("c1", 1, helpful=False, at=T0, comment="no\x00"))
    store.add_action(CallAction("c1", T0, "taken", by="al\x00ice", detail="d\x00"))
    store.end_call("c1", T0 + 1, "hang\x00up", "c1\x00.wav")
    detail = store.call("c1")
    assert detail is not None
    assert detail.call.caller_id == "+1" and detail.call.metadata == {"a": ["b"], "x": None}
    assert (detail.call.end_reason, detail.call.recording) == ("hangup", "c1.wav")
    (turn,) = detail.turns
    assert (turn.question, turn.reply, turn.rules) == ("WiFi?", "ok", ("pii",))
    assert detail.feedback[0].comment == "no" and detail.actions[0].by == "alice"
    assert [c.call_id for c in store.calls(CallQuery(text="wifi", rule="pii"))] == ["c1"]
    assert store.call("c1\x00") is None
    store.end_call("c\x00", T0, "hangup", None)  # never started: ignored, as on SQLite
    assert store.calls(CallQuery(rule="x\x00")) == []


def test_a_name_with_a_nul_character_is_nobody(empty_postgres_url: str) -> None:  # noqa: F811
    users = PostgresUsers(empty_postgres_url, kdf=QUICK)
    users.add("alice", "password-1")
    assert not users.verify("al\x00ice", "password-1")
    assert users.login("alice\x00", "password-1") is None
    assert not users.set_password("alice\x00", "password-2")
    assert not users.remove("alice\x00")
    assert users.verify("alice", "password-1")
    users.close()


# ----------------------------------------------------------------------------- same as SQLite

WORDS = [
    "Ça marche?",
    "STRASSE",
    "Straße 5",
    "Wi-Fi",
    "won't",
    "ÉCOLE",
    "école",
    "İstanbul",
    "ﬁle",
    "ΣΊΣΥΦΟΣ",
    "100%",
    "pay with PayPal",
    "refund",
    "  ",
    "",
]
"""Text whose case folding PostgreSQL's lower() would not do as Python's casefold does."""
SEARCHES = [
    "ca",
    "ça",
    "strasse",
    "straße",
    "wi",
    "wi-fi",
    "wont",
    "ecole",
    "école",
    "istanbul",
    "i̇stanbul",
    "file",
    "σίσυφοσ",
    "100",
    "100%",
    "paypal pay",
    "refund",
    "5",
    "a",
    "",
]
RULES = ["out_of_scope", "clarify", "not_understood", "human_request", "profanity", "pii"]
BACKENDS = ["ollama", "keypad", "supervisor", "person", "", "hold"]
MIDNIGHT = 1_700_006_400.0  # 2023-11-15 00:00 UTC


def records(seed: int) -> tuple[list[CallRecord], list[TurnRecord], list[Feedback]]:
    """Calls, turns and feedback of every kind, some at the same instant, some a fraction of a
    millisecond either side of midnight."""
    rng = random.Random(seed)
    calls, turns, feedback = [], [], []
    near_midnight = [-1.0, -0.0006, -0.0004, 0.0, 0.0004, 1.0]
    for number in range(40):
        call_id = rng.choice(["a", "B", "_", "Z", "é", "c-"]) + str(number % 7)
        if any(c.call_id == call_id for c in calls):
            continue
        started = T0 + rng.choice([0.0, 0.0, 3600.0, DAY, 2 * DAY])
        channel = rng.choice(["call", "phone", "kiosk", "text", "sip"])
        calls.append(CallRecord(call_id, channel, started))  # type: ignore[arg-type]
        for turn in range(1, rng.randint(0, 5) + 1):
            at = rng.choice([started, MIDNIGHT + rng.choice(near_midnight), started + turn])
            turns.append(
                TurnRecord(
                    call_id,
                    turn,
                    at,
                    question=" ".join(rng.sample(WORDS, 2)),
                    reply=rng.choice([*WORDS, "Sure."]),
                    handoff=rng.random() < 0.3,
                    rules=tuple(rng.sample(RULES, rng.choice([0, 0, 1, 2]))),
                    backend=rng.choice(BACKENDS),
                )
            )
            for _ in range(rng.choice([0, 0, 1, 2])):
                feedback.append(
                    Feedback(call_id, turn, rng.random() < 0.5, at + rng.choice([1.0, 2.0]))
                )
    return calls, turns, feedback


@pytest.mark.parametrize("seed", range(3))
def test_the_same_records_give_the_same_answers_as_sqlite(
    seed: int,
    store: PostgresStore,
    tmp_path: Path,
) -> None:
    sqlite = SqliteStore(tmp_path / "voicedesk.db")
    calls, turns, feedback = records(seed)
    for each in (sqlite, store):
        for call in calls:
            each.start_call(call)
        for turn in turns:
            each.add_turn(turn)
        for verdict in feedback:
            each.add_feedback(verdict)
    queries = [
        CallQuery(),
        CallQuery(limit=3, offset=2),
        CallQuery(since=T0 + 1, until=T0 + 2 * DAY),
        *(CallQuery(channel=channel) for channel in ("call", "phone", "kiosk", "text")),  # type: ignore[arg-type]
        CallQuery(handoff=True),
        CallQuery(handoff=False),
        *(CallQuery(rule=rule) for rule in [*RULES, "*", "nope"]),
        *(CallQuery(text=text) for text in SEARCHES),
        CallQuery(handoff=False, rule="*", text="a"),
    ]
    for query in queries:
        assert store.calls(query) == sqlite.calls(query), query
    for call in calls:
        assert store.call(call.call_id) == sqlite.call(call.call_id)
    for since in (0.0, T0, MIDNIGHT - 0.0005, MIDNIGHT, T0 + DAY):
        assert store.gaps(since) == sqlite.gaps(since), since
        assert store.gaps(since, limit=2) == sqlite.gaps(since, limit=2)
        assert store.daily(since) == sqlite.daily(since), since
    sqlite.close()
