"""The login desk: one password check at a time whatever comes in, a bounded queue, the
throttle asked before each check, and guesses counted even when their client goes away."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakes import Clock
from voice.config import ConsoleSettings
from voice.office import auth
from voice.office.auth import Scrypt, Users
from voice.office.login import HASH_NICENESS, Logins

QUICK = Scrypt(n=2**12)
"""Cheap enough for the tests, costly enough (a few ms) for checks to overlap if they could."""
PASSWORD = "correct horse battery"
IMMEDIATE = ConsoleSettings(login_refusal_delay_s=0.0)


class Kdf:
    """`voice.office.auth._scrypt`, wrapped: how many ran, and how many at once at most."""

    def __init__(self, real: Callable[..., bytes]) -> None:
        self._real = real
        self._lock = threading.Lock()
        self.running = self.most = self.calls = 0
        self.costs: list[tuple[int, int, int]] = []
        self.threads: set[str] = set()
        self.started = threading.Event()

    def __call__(self, password: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
        with self._lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
            self.costs.append((n, r, p))
            self.threads.add(threading.current_thread().name)
        self.started.set()
        try:
            time.sleep(0.005)  # long enough for a second check to start, if one could
            return self._real(password, salt, n, r, p, size)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def users(tmp_path: Path) -> Iterator[Users]:
    users = Users(tmp_path / "voicedesk.db", kdf=QUICK)
    users.add("alice", PASSWORD)
    users.verify("nobody", "x")  # makes the stand-in hash for unknown names
    yield users
    users.close()


@pytest.fixture
def kdf(monkeypatch: pytest.MonkeyPatch) -> Kdf:
    wrapped = Kdf(auth._scrypt)
    monkeypatch.setattr(auth, "_scrypt", wrapped)
    return wrapped


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def desk(users: Users, clock: Clock, **settings: Any) -> Logins:
    return Logins(users, dataclasses.replace(IMMEDIATE, **settings), clock=clock)


async def test_twenty_logins_at_once_run_one_hash_at_a_time(users, kdf, clock):
    logins = await desk(users, clock, login_max_waiting=20)
    try:
        outcomes = await asyncio.gather(
            *(logins.login(f"user{i}", "guess", f"198.51.100.{i}") for i in range(19)),
            logins.login("alice", PASSWORD, "192.0.2.1"),
        )
    finally:
        await logins.close()
    assert [o.result for o in outcomes] == ["wrong"] * 19 + ["ok"]
    assert kdf.calls == 20 and kdf.most == 1
    assert len(kdf.threads) == 1 and next(iter(kdf.threads)).startswith("login")


async def test_a_burst_from_one_address_costs_a_few_hashes(users, kdf, clock):
    """20 wrong logins at once: 9 get in line (1 checked, `login_max_waiting` waiting), the
    rest are refused at once; of those in line, the ones behind the 4th wrong password find the
    address throttled when their turn comes, and are refused unchecked."""
    logins = await desk(users, clock)
    try:
        outcomes = await asyncio.gather(
            *(logins.login("alice", f"guess {i}", "203.0.113.9") for i in range(20))
        )
    finally:
        await logins.close()
    results = [o.result for o in outcomes]
    assert results.count("busy") == 20 - 1 - IMMEDIATE.login_max_waiting
    assert results.count("wrong") == IMMEDIATE.login_free_failures + 1
    assert results.count("throttled") == 20 - results.count("busy") - results.count("wrong")
    assert kdf.calls == results.count("wrong")
    assert all(o.retry_after_s > 0 for o in outcomes if o.result != "wrong")


async def test_a_locked_name_refuses_the_right_password_until_the_lock_ends(
    users, kdf, clock, caplog
):
    caplog.set_level(logging.DEBUG)
    logins = await desk(users, clock, login_lock_failures=5, login_free_failures=100)
    try:
        for index in range(5):
            outcome = await logins.login("alice", "guess-secret-7", f"198.51.100.{index}")
            assert outcome.result == "wrong"
        calls = kdf.calls
        refused = await logins.login("alice", PASSWORD, "192.0.2.1")
        assert refused.result == "locked" and refused.token is None
        assert refused.retry_after_s == pytest.approx(IMMEDIATE.login_lock_s)
        assert kdf.calls == calls  # not even checked
        clock.now += IMMEDIATE.login_lock_s
        accepted = await logins.login("alice", PASSWORD, "192.0.2.1")
        assert accepted.result == "ok" and accepted.token is not None
        assert users.user_for(accepted.token) == "alice"
    finally:
        await logins.close()
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "locked" in warning.getMessage() and "'alice'" in warning.getMessage()
    assert "guess-secret" not in caplog.text and PASSWORD not in caplog.text


async def test_an_unknown_name_costs_what_a_known_one_does(users, kdf, clock):
    logins = await desk(users, clock, login_free_failures=100)
    try:
        assert (await logins.login("alice", "wrong", "a")).result == "wrong"
        assert (await logins.login("mallory", "wrong", "b")).result == "wrong"
        assert (await logins.login("x" * 500, "wrong", "c")).result == "wrong"
    finally:
        await logins.close()
    assert kdf.calls == 3
    assert len(set(kdf.costs)) == 1  # the same scrypt cost each time


async def test_a_guess_whose_client_goes_away_is_still_counted(users, kdf, clock):
    logins = await desk(users, clock, login_free_failures=0)
    try:
        guess = asyncio.create_task(logins.login("alice", "guess", "203.0.113.9"))
        assert await asyncio.to_thread(kdf.started.wait, 10)  # its password is being checked
        guess.cancel()
        with pytest.raises(asyncio.CancelledError):
            await guess
        for _ in range(1000):
            if logins.throttle.check("alice", "203.0.113.9", clock.now) is not None:
                break
            await asyncio.sleep(0.005)
        wait = logins.throttle.check("alice", "203.0.113.9", clock.now)
        assert wait is not None and wait.reason == "throttled"
    finally:
        await logins.close()


async def test_refusals_are_answered_after_a_pause(users, clock):
    logins = await desk(users, clock, login_free_failures=0, login_refusal_delay_s=0.2)
    try:
        assert (await logins.login("alice", "guess", "a")).result == "wrong"
        began = time.monotonic()
        assert (await logins.login("alice", "guess", "a")).result == "throttled"
        assert time.monotonic() - began >= 0.2
    finally:
        await logins.close()


async def test_a_store_that_cannot_be_written_is_unavailable_not_a_guess(
    users, monkeypatch, clock, caplog
):
    def read_only(*args: object) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(users.database, "write", read_only)
    logins = await desk(users, clock, login_free_failures=0)
    try:
        outcome = await logins.login("alice", PASSWORD, "a")
        assert outcome.result == "unavailable" and outcome.token is None
        assert logins.throttle.check("alice", "a", clock.now) is None
    finally:
        await logins.close()
    assert "readonly database" in caplog.text


@pytest.mark.skipif(sys.platform != "linux", reason="a nice value per thread is Linux's")
async def test_passwords_are_checked_in_a_thread_of_lower_priority(users, clock):
    logins = await desk(users, clock)
    try:
        assert (await logins.login("alice", PASSWORD, "a")).result == "ok"

        def niceness() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        ours = await asyncio.to_thread(niceness)
        theirs = await asyncio.get_running_loop().run_in_executor(logins._thread, niceness)
    finally:
        await logins.close()
    assert theirs == min(ours + HASH_NICENESS, 19)
