"""Supervisors: names, scrypt password hashes, and login sessions, in the records database.

A session token is 32 random bytes (URL-safe base64); only its SHA-256 is stored, so a copy of
the database does not let anyone in. The page carries the token in a cookie, the APIs as
`Authorization: Bearer <token>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from voice.office.database import BUSY_TIMEOUT_MS, Database

SESSION_HOURS = 12.0
"""How long a login lasts (`records.session_hours`)."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
"""A supervisor's name: 1 to 64 letters, digits, `.`, `_`, `@` or `-`, not starting with one of
the signs."""
MAX_PASSWORD = 1024
"""Characters; longer passwords are refused (scrypt would take them, but nobody types that)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,   -- scrypt$<n>$<r>$<p>$<salt b64>$<key b64>
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,  -- hex; the token itself is never stored
    name         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
"""


@dataclass(frozen=True)
class Scrypt:
    """scrypt cost parameters. The default takes about 50 ms and 32 MiB per hash."""

    n: int = 2**15
    r: int = 8
    p: int = 1
    key_bytes: int = 32
    salt_bytes: int = 16

    def hash(self, password: str) -> str:
        """A self-describing hash of `password` with a fresh random salt."""
        salt = secrets.token_bytes(self.salt_bytes)
        key = _scrypt(password, salt, self.n, self.r, self.p, self.key_bytes)
        return f"scrypt${self.n}${self.r}${self.p}${_b64(salt)}${_b64(key)}"


def check_password(password: str, stored: str) -> bool:
    """Whether `password` matches a hash made by `Scrypt.hash` (constant-time compare).

    A malformed stored hash is a mismatch, not an error."""
    try:
        kind, n, r, p, salt, key = stored.split("$")
        if kind != "scrypt":
            return False
        expected, salt_bytes = base64.urlsafe_b64decode(key), base64.urlsafe_b64decode(salt)
        actual = _scrypt(password, salt_bytes, int(n), int(r), int(p), len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    memory = 128 * r * n * p + 128 * r * (n + 2) + (1 << 20)
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=size
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def token_hash(token: str) -> str:
    """What the sessions table keeps of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Tables(Protocol):
    """Where `Users` keeps its two tables: SQL with `?` placeholders, in transactions."""

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows one statement finds."""
        ...

    def write(self, *statements: tuple[str, tuple[Any, ...]]) -> list[int]:
        """Run the statements in one transaction; the rows each changed."""
        ...

    def close(self) -> None: ...


class SqliteTables:
    """`Tables` in an SQLite file (a connection per thread, see `Database`)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self.database.connection().execute(sql, args).fetchall())

    def write(self, *statements: tuple[str, tuple[Any, ...]]) -> list[int]:
        with self.database.write() as db:
            return [db.execute(sql, args).rowcount for sql, args in statements]

    def close(self) -> None:
        self.database.close()


class Users:
    """The supervisors and their sessions, in tables of their own in the records database (an
    SQLite file by default; `voice.office.postgres.PostgresUsers` keeps them in PostgreSQL).

    Thread-safe. Every method does I/O and `add`, `verify` and `login` run scrypt (tens of
    milliseconds): call them from a worker thread, not the event loop. The server calls `login`
    through `voice.office.login.Logins`, which throttles guessing and runs one hash at a time.
    Database failures raise the database's errors (`sqlite3.Error`, `psycopg.Error`).

    Args:
        path: The SQLite file (the tables are created when missing), or the `Tables` to use.
        session_hours: How long a login lasts.
        clock: Unix time in seconds; tests pass their own.
        kdf: The cost of new hashes; existing hashes keep the cost stored with them.
    """

    def __init__(
        self,
        path: Path | Tables,
        session_hours: float = SESSION_HOURS,
        clock: Callable[[], float] = time.time,
        kdf: Scrypt | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.session_s = session_hours * 3600.0
        self._clock = clock
        self._kdf = kdf or Scrypt()
        if isinstance(path, Path):
            path = SqliteTables(Database(path, SCHEMA, busy_timeout_ms))
        self._tables = path

    @property
    def database(self) -> Database | None:
        """The SQLite file underneath (None on another database), for maintenance and tests."""
        return self._tables.database if isinstance(self._tables, SqliteTables) else None

    @cached_property
    def _dummy(self) -> str:
        """Checked for unknown names, so a wrong name takes as long as a wrong password."""
        return self._kdf.hash(secrets.token_urlsafe(16))

    def add(self, name: str, password: str) -> None:
        """Add a supervisor. Raises ValueError for a bad name or password or a taken name."""
        check_name(name)
        check_new_password(password)
        hashed = self._kdf.hash(password)
        [added] = self._tables.write(
            (
                "INSERT INTO users (name, hash, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, hashed, self._clock()),
            )
        )
        if not added:
            raise ValueError(f"a supervisor named {name} exists already")

    def set_password(self, name: str, password: str) -> bool:
        """Change a password and end that supervisor's sessions; False if there is no such name."""
        check_new_password(password)
        hashed = self._kdf.hash(password)
        if not _may_exist(name):
            return False
        changed, _ = self._tables.write(
            ("UPDATE users SET hash = ? WHERE name = ?", (hashed, name)),
            ("DELETE FROM sessions WHERE name = ?", (name,)),
        )
        return changed > 0

    def remove(self, name: str) -> bool:
        """Remove a supervisor and end their sessions; False if there is no such name."""
        if not _may_exist(name):
            return False
        removed, _ = self._tables.write(
            ("DELETE FROM users WHERE name = ?", (name,)),
            ("DELETE FROM sessions WHERE name = ?", (name,)),
        )
        return removed > 0

    def list(self) -> list[str]:
        """The supervisors' names, sorted."""
        return [name for (name,) in self._tables.read("SELECT name FROM users ORDER BY name")]

    def verify(self, name: str, password: str) -> bool:
        """Whether `password` is `name`'s. Takes as long for an unknown name as for a known one."""
        found = None
        if _may_exist(name):
            rows = self._tables.read("SELECT hash FROM users WHERE name = ?", (name,))
            found = rows[0] if rows else None
        if len(password) > MAX_PASSWORD:
            return False
        matches = check_password(password, found[0] if found else self._dummy)
        return matches and found is not None

    # ------------------------------------------------------------ sessions

    def login(self, name: str, password: str) -> str | None:
        """A new session token for a right name and password, else None."""
        if not self.verify(name, password):
            return None
        token = secrets.token_urlsafe(32)
        now = self._clock()
        self._tables.write(
            ("DELETE FROM sessions WHERE expires_at <= ?", (now,)),
            (
                "INSERT INTO sessions (token_sha256, name, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (token_hash(token), name, now, now + self.session_s),
            ),
        )
        return token

    def user_for(self, token: str) -> str | None:
        """The supervisor a token belongs to; None for an unknown, expired or ended session."""
        found = self._tables.read(
            "SELECT s.name FROM sessions s JOIN users u ON u.name = s.name"
            " WHERE s.token_sha256 = ? AND s.expires_at > ?",
            (token_hash(token), self._clock()),
        )
        return str(found[0][0]) if found else None

    def logout(self, token: str) -> None:
        """End a session; an unknown token is ignored."""
        self._tables.write(("DELETE FROM sessions WHERE token_sha256 = ?", (token_hash(token),)))

    def close(self) -> None:
        self._tables.close()


def _may_exist(name: str) -> bool:
    """False for a name no supervisor can have (one with NUL, which PostgreSQL's text cannot
    even hold)."""
    return "\x00" not in name


def check_name(name: str) -> None:
    """Raises ValueError unless `name` is a good supervisor name (`NAME`)."""
    if not NAME.fullmatch(name):
        raise ValueError(
            f"bad supervisor name {name[:80]!r}: use 1 to 64 letters, digits, '.', '_', '@' or '-'"
        )


def check_new_password(password: str) -> None:
    """Raises ValueError for an empty password or one over `MAX_PASSWORD` characters."""
    if not password or len(password) > MAX_PASSWORD:
        raise ValueError(f"a password must have 1 to {MAX_PASSWORD} characters")
