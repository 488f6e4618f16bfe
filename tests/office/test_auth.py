"""Supervisors: password hashes, logins, session tokens and their expiry, in SQLite and in
PostgreSQL alike."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fakes import Clock
from tests.support.postgres import empty_postgres_url, postgres_url, rows  # noqa: F401 (fixtures)
from voice.office.auth import Scrypt, Users, check_password
from voice.office.postgres import PostgresUsers
from voice.office.store import SqliteStore

QUICK = Scrypt(n=2**10)
"""Cheap hashes for the tests that are not about the hash."""


@pytest.fixture
def clock() -> Clock:
    return Clock(1_700_000_000.0)


@pytest.fixture(params=["sqlite", "postgres"])
def users(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> Iterator[Users | PostgresUsers]:
    """Each kind of `Users`, with no supervisors (a `PostgresUsers` has the same interface)."""
    users: Users | PostgresUsers
    if request.param == "sqlite":
        users = Users(tmp_path / "voicedesk.db", session_hours=12, clock=clock, kdf=QUICK)
    else:
        url = request.getfixturevalue("empty_postgres_url")
        users = PostgresUsers(url, session_hours=12, clock=clock, kdf=QUICK)
    yield users
    users.close()


def test_the_default_hash_is_scrypt_with_a_random_salt() -> None:
    first, second = Scrypt().hash("correct horse"), Scrypt().hash("correct horse")
    assert first.startswith("scrypt$32768$8$1$")
    assert first != second  # salted
    assert "correct horse" not in first
    assert check_password("correct horse", first)
    assert not check_password("correct hors", first)


@pytest.mark.parametrize("stored", ["", "plain", "md5$x$y", "scrypt$3$8$1$AAAA$AAAA", "scrypt$a"])
def test_a_malformed_hash_is_a_mismatch(stored: str) -> None:
    assert not check_password("anything", stored)


def test_add_and_verify(users: Users) -> None:
    users.add("alice", "s3cret-enough")
    assert users.verify("alice", "s3cret-enough")
    assert not users.verify("alice", "s3cret-enougH")
    assert not users.verify("alice", "")
    assert not users.verify("bob", "s3cret-enough")
    assert not users.verify("alice", "x" * 5000)
    [(stored,)] = rows(users, "SELECT hash FROM users")
    assert isinstance(stored, str) and "s3cret" not in stored
    assert stored.startswith("scrypt$1024$8$1$")


def test_users_are_listed_and_removed(users: Users) -> None:
    users.add("bob", "password-1")
    users.add("alice", "password-2")
    assert users.list() == ["alice", "bob"]
    token = users.login("bob", "password-1")
    assert token is not None
    assert users.remove("bob")
    assert not users.remove("bob")
    assert users.list() == ["alice"]
    assert users.user_for(token) is None
    assert rows(users, "SELECT * FROM sessions") == []


def test_a_taken_name_is_refused(users: Users) -> None:
    users.add("alice", "password-1")
    with pytest.raises(ValueError, match="exists already"):
        users.add("alice", "password-2")
    assert users.verify("alice", "password-1")


@pytest.mark.parametrize(
    "name", ["", " alice", "alice bob", "-alice", "a" * 65, "al/ice", "ålice", "alice\n"]
)
def test_bad_names_are_refused(users: Users, name: str) -> None:
    with pytest.raises(ValueError, match="bad supervisor name"):
        users.add(name, "password-1")
    assert users.list() == []


@pytest.mark.parametrize("name", ["a", "alice", "Alice.Smith", "a_b-c", "ops@example.com"])
def test_good_names(users: Users, name: str) -> None:
    users.add(name, "password-1")
    assert users.list() == [name]


def test_empty_password_is_refused(users: Users) -> None:
    with pytest.raises(ValueError, match="password"):
        users.add("alice", "")


def test_login_gives_a_token_that_names_the_user(users: Users) -> None:
    users.add("alice", "password-1")
    assert users.login("alice", "wrong") is None
    assert users.login("nobody", "password-1") is None
    token = users.login("alice", "password-1")
    assert token is not None and len(token) >= 43  # 32 random bytes
    assert users.user_for(token) == "alice"
    assert users.login("alice", "password-1") != token
    stored = [hashed for (hashed,) in rows(users, "SELECT token_sha256 FROM sessions")]
    assert hashlib.sha256(token.encode()).hexdigest() in stored  # only the hash is kept
    assert token not in stored


def test_unknown_tokens_are_nobody(users: Users) -> None:
    users.add("alice", "password-1")
    users.login("alice", "password-1")
    assert users.user_for("") is None
    assert users.user_for("not-a-token") is None
    assert users.user_for("x" * 10_000) is None


def test_tokens_expire(users: Users, clock: Clock) -> None:
    users.add("alice", "password-1")
    token = users.login("alice", "password-1")
    assert token is not None
    clock.now += 12 * 3600 - 1
    assert users.user_for(token) == "alice"
    clock.now += 1
    assert users.user_for(token) is None
    users.login("alice", "password-1")  # logging in clears expired sessions
    assert len(rows(users, "SELECT * FROM sessions")) == 1


def test_logout_ends_the_session(users: Users) -> None:
    users.add("alice", "password-1")
    token = users.login("alice", "password-1")
    other = users.login("alice", "password-1")
    assert token is not None and other is not None
    users.logout(token)
    users.logout(token)
    users.logout("unknown")
    assert users.user_for(token) is None
    assert users.user_for(other) == "alice"


def test_a_new_password_ends_the_sessions(users: Users) -> None:
    users.add("alice", "password-1")
    token = users.login("alice", "password-1")
    assert token is not None
    assert users.set_password("alice", "password-2")
    assert not users.set_password("nobody", "password-2")
    assert users.user_for(token) is None
    assert users.login("alice", "password-1") is None
    assert users.login("alice", "password-2") is not None


def test_users_share_the_records_database(tmp_path: Path) -> None:
    path = tmp_path / "voicedesk.db"
    store = SqliteStore(path)
    users = Users(path, kdf=QUICK)
    users.add("alice", "password-1")
    again = Users(path, kdf=QUICK)  # another process: `voicedesk user add` while serving
    assert again.list() == ["alice"]
    tables = {name for (name,) in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"calls", "turns", "feedback", "users", "sessions"} <= tables
    for closing in (store, users, again):
        closing.close()
