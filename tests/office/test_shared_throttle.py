"""The login throttle's counts shared in Redis (127.0.0.1:6379) by the servers of one
deployment: wrong passwords counted together however they are spread, none lost when servers
count at once, and each server counting on its own while Redis is gone."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis import live_prefix, redis_url  # noqa: F401 (fixtures)
from voice.config import ConsoleSettings
from voice.office.auth import Scrypt, Users
from voice.office.login import Logins
from voice.office.shared_throttle import SharedCounts

PASSWORD = "correct horse battery"
LOCK_AT_5 = ConsoleSettings(
    login_refusal_delay_s=0.0, login_free_failures=100, login_lock_failures=5
)


@pytest.fixture
def users(tmp_path: Path) -> Iterator[Users]:
    users = Users(tmp_path / "voicedesk.db", kdf=Scrypt(n=2**10))
    users.add("alice", PASSWORD)
    yield users
    users.close()


async def test_guesses_spread_over_the_servers_lock_the_name_on_all(
    users,
    redis_url,  # noqa: F811
    live_prefix,  # noqa: F811
):
    servers = [
        Logins(users, LOCK_AT_5, shared=SharedCounts(redis_url, live_prefix, LOCK_AT_5))
        for _ in range(2)
    ]
    try:
        results = []
        for n in range(LOCK_AT_5.login_lock_failures):
            outcome = await servers[n % 2].login("alice", "guess", f"203.0.113.{n}")
            results.append(outcome.result)
        assert results == ["wrong"] * LOCK_AT_5.login_lock_failures
        for server in servers:
            locked = await server.login("alice", PASSWORD, "198.51.100.1")
            assert locked.result == "locked", "five guesses in all, not five on each"
            assert 0 < locked.retry_after_s <= LOCK_AT_5.login_lock_s
        assert len(servers[0].throttle) == 0, "counted in Redis, not in the server"
    finally:
        for server in servers:
            await server.close()


async def test_a_right_password_clears_the_counts_on_every_server(
    users,
    redis_url,  # noqa: F811
    live_prefix,  # noqa: F811
):
    one, two = (
        Logins(users, LOCK_AT_5, shared=SharedCounts(redis_url, live_prefix, LOCK_AT_5))
        for _ in range(2)
    )
    try:
        for _ in range(LOCK_AT_5.login_lock_failures - 1):
            assert (await one.login("alice", "guess", "203.0.113.5")).result == "wrong"
        assert (await two.login("alice", PASSWORD, "203.0.113.5")).result == "ok"
        for _ in range(LOCK_AT_5.login_lock_failures - 1):
            assert (await one.login("alice", "guess", "203.0.113.5")).result == "wrong"
        assert (await two.login("alice", PASSWORD, "203.0.113.5")).result == "ok"
    finally:
        await one.close()
        await two.close()


async def test_failures_counted_at_once_are_all_counted(redis_url, live_prefix):  # noqa: F811
    never = dataclasses.replace(LOCK_AT_5, login_lock_failures=1000)
    counts = [SharedCounts(redis_url, live_prefix, never) for _ in range(4)]
    try:
        await asyncio.gather(*(c.failed("alice", "203.0.113.5") for c in counts * 10))
        raw = counts[0]._redis
        assert await raw.hget(f"{live_prefix}:login:name:alice", "failures") == "40"
        assert await raw.hget(f"{live_prefix}:login:address:203.0.113.5", "failures") == "40"
        ttl = await raw.ttl(f"{live_prefix}:login:name:alice")
        assert 0 < ttl <= never.login_lock_s + 1, "forgotten once it cannot matter"
    finally:
        for c in counts:
            await c.close()


async def test_without_redis_each_server_counts_on_its_own(users, caplog):
    gone = SharedCounts("redis://127.0.0.1:1/0", "nowhere", LOCK_AT_5)
    server = Logins(users, LOCK_AT_5, shared=gone)
    try:
        assert (await server.login("alice", PASSWORD, "203.0.113.5")).result == "ok"
        for _ in range(LOCK_AT_5.login_lock_failures):
            assert (await server.login("alice", "guess", "203.0.113.5")).result == "wrong"
        assert (await server.login("alice", PASSWORD, "203.0.113.5")).result == "locked"
    finally:
        await server.close()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "Redis is unreachable" in errors[0].getMessage()
