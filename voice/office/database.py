"""One SQLite file shared by threads: a connection per thread, WAL mode, a busy timeout."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from text.words import plain_words

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000
"""How long a write waits for another connection's lock before "database is locked"."""


class Database:
    """One SQLite file, opened once per thread that uses it (WAL mode, a busy timeout).

    Thread-safe: each thread gets its own connection, so readers never wait for the writer and a
    connection is never used by two threads at once. `close()` closes them all and must not race
    with calls in progress.
    """

    def __init__(self, path: Path, schema: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        self.connection().executescript(schema)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, in autocommit mode (use `write()` for transactions)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError(f"{self.path} is closed")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._connections.append(conn)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.create_function("fold", 1, _fold, deterministic=True)
        except sqlite3.Error:
            with self._lock:
                self._connections.remove(conn)
            conn.close()
            raise
        self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE): committed on success, rolled back on error."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as err:
                    log.warning("%s: rollback failed: %s", self.path, err)
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()


def _fold(text: str | None) -> str:
    """SQL `fold(text)`: the text's words as searches compare them (`text.words.plain_words`),
    one space apart."""
    return " ".join(plain_words(text or ""))
