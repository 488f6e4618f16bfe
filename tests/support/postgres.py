"""A throwaway PostgreSQL database for the tests of the PostgreSQL store and logins.

The server is the one at `ADMIN_URL` (trust auth for `postgres` on loopback in CI). Without it
the tests that need it are skipped, or fail where the environment says CI=true.

Use the fixtures by importing them into a test module:

    from tests.support.postgres import postgres_url  # noqa: F401 (a fixture)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.support.ci import unavailable
from voice.office.postgres import PostgresStore, PostgresUsers

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
"""A database to connect to while creating and dropping the test databases."""
TABLES = ("calls", "turns", "feedback", "actions", "users", "sessions")
"""Every table of `voice.office.postgres.MIGRATIONS`, emptied between tests."""


def _admin() -> psycopg.Connection[Any]:
    """A connection to `ADMIN_URL`; skips (fails under CI=true) the test without a server."""
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        unavailable(f"no PostgreSQL server at {ADMIN_URL}: {err}".strip())


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database `voicedesk_test_<random hex>`, dropped after (its
    connections terminated first)."""
    name = f"voicedesk_test_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with _admin() as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def empty(url: str) -> None:
    """Delete every row of the store's and the logins' tables (the schema stays)."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('calls') IS NOT NULL").fetchone()
        if exists and exists[0]:
            tables = sql.SQL(", ").join(sql.Identifier(table) for table in TABLES)
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(tables))


def rows(owner: Any, query: str) -> list[tuple[Any, ...]]:
    """The rows a query finds in the database underneath a store or `Users` of either kind."""
    if isinstance(owner, PostgresStore | PostgresUsers):
        with owner.pool.connection() as conn:
            return conn.execute(query).fetchall()  # type: ignore[arg-type]
    database = owner.database if hasattr(owner, "database") else owner._db
    return list(database.connection().execute(query).fetchall())


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh database for the test module, dropped after it."""
    with fresh_database() as url:
        yield url


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> str:
    """The module's database with empty tables: a fresh start for each test."""
    empty(postgres_url)
    return postgres_url
