"""The login throttle on its own: growing waits, locks, what a right password clears, and the
bound on what it remembers. Time is an argument: no clock, no sleeping."""

from __future__ import annotations

import pytest

from voice.config import ConsoleSettings
from voice.office.throttle import Lock, LoginThrottle, Wait, address_key

DEFAULTS = ConsoleSettings()


def attack(throttle: LoginThrottle, name: str, address: str, attempts: int, every_s: float) -> int:
    """Wrong passwords at a steady pace, as the attack did; how many were checked."""
    checked = 0
    for index in range(attempts):
        now = index * every_s
        if throttle.check(name, address, now) is None:
            throttle.failed(name, address, now)
            checked += 1
    return checked


def test_the_reported_attack_is_throttled_then_locked() -> None:
    """2,340 wrong passwords in under 4 minutes: 10 are checked, then the name and the
    address are locked, and the right password is refused until the lock ends."""
    throttle = LoginThrottle(DEFAULTS)
    assert attack(throttle, "alice", "203.0.113.9", 2340, every_s=0.1) == 10
    now = 2340 * 0.1
    wait = throttle.check("alice", "203.0.113.9", now)
    assert wait is not None and wait.reason == "locked"
    # The 4th failure came at 0.3 s, the 10th 1+2+4+8+16+30 s later: at 61.3 s.
    locked_until = 61.3 + DEFAULTS.login_lock_s
    assert wait.retry_after_s == pytest.approx(locked_until - now, abs=0.15)
    assert throttle.check("alice", "203.0.113.9", locked_until + 0.15) is None


def test_the_waits_double_up_to_their_cap() -> None:
    settings = ConsoleSettings(login_lock_failures=100, login_lock_window_s=10_000)
    throttle = LoginThrottle(settings)
    now, waits = 0.0, []
    for _ in range(12):
        assert throttle.check("alice", "a", now) is None
        throttle.failed("alice", "a", now)
        wait = throttle.check("alice", "a", now)
        waits.append(0.0 if wait is None else wait.retry_after_s)
        if wait is not None:
            assert wait.reason == "throttled"
            assert throttle.check("alice", "a", now + wait.retry_after_s - 0.01) is not None
        now += waits[-1]
    assert waits == [0, 0, 0, 1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_a_lock_refuses_the_right_password_until_it_ends() -> None:
    throttle = LoginThrottle(ConsoleSettings(login_free_failures=100, login_lock_failures=3))
    for now in (0.0, 1.0):
        assert throttle.failed("alice", "a", now) == []
    locks = throttle.failed("alice", "a", 2.0)
    assert locks == [
        Lock("name", "alice", 2.0 + DEFAULTS.login_lock_s),
        Lock("address", "a", 2.0 + DEFAULTS.login_lock_s),
    ]
    assert throttle.check("alice", "a", 3.0) == Wait("locked", DEFAULTS.login_lock_s - 1.0)
    # Whatever the caller does meanwhile (the password is not even checked), the lock ends.
    assert throttle.check("alice", "a", 2.0 + DEFAULTS.login_lock_s) is None


def test_a_name_is_locked_whatever_address_the_guesses_come_from() -> None:
    throttle = LoginThrottle(ConsoleSettings(login_free_failures=100, login_lock_failures=5))
    for index in range(5):
        throttle.failed("alice", f"198.51.100.{index}", float(index))
    wait = throttle.check("alice", "192.0.2.77", 10.0)
    assert wait is not None and wait.reason == "locked"
    assert throttle.check("bob", "192.0.2.77", 10.0) is None  # the address is clean


def test_an_address_is_locked_whatever_names_it_tries() -> None:
    throttle = LoginThrottle(ConsoleSettings(login_free_failures=100, login_lock_failures=5))
    for index in range(5):
        throttle.failed(f"user{index}", "198.51.100.7", float(index))
    wait = throttle.check("carol", "198.51.100.7", 10.0)
    assert wait is not None and wait.reason == "locked"
    assert throttle.check("carol", "198.51.100.8", 10.0) is None


def test_failures_outside_the_window_do_not_add_up() -> None:
    settings = ConsoleSettings(login_free_failures=100, login_lock_failures=3)
    throttle = LoginThrottle(settings)
    for now in (0.0, 1.0, settings.login_lock_window_s + 1, settings.login_lock_window_s + 2):
        assert throttle.failed("alice", "a", now) == []
    assert throttle.check("alice", "a", settings.login_lock_window_s + 3) is None


def test_the_right_password_clears_the_name_and_the_address() -> None:
    throttle = LoginThrottle(DEFAULTS)
    for now in range(4):
        throttle.failed("alice", "a", float(now))
    assert throttle.check("alice", "a", 3.5) is not None
    throttle.succeeded("alice", "a")
    assert throttle.check("alice", "a", 3.5) is None
    assert len(throttle) == 0


def test_a_flood_of_new_names_and_addresses_stays_within_the_bound() -> None:
    throttle = LoginThrottle(ConsoleSettings(login_table_size=1000))
    for index in range(50_000):
        throttle.failed(
            f"guess{index}", f"10.{index // 65536}.{index // 256 % 256}.{index % 256}", 0
        )
        assert len(throttle) <= 1000
    assert len(throttle) == 1000


def test_a_flood_of_new_names_does_not_lift_a_lock() -> None:
    """The least recently seen are forgotten first, but a lock is kept while others can go."""
    settings = ConsoleSettings(login_free_failures=100, login_lock_failures=3, login_table_size=100)
    throttle = LoginThrottle(settings)
    for now in range(3):
        throttle.failed("alice", "203.0.113.9", float(now))
    for index in range(10_000):
        throttle.failed(f"guess{index}", f"2001:db8:{index:x}::1", 10.0)
    assert len(throttle) <= 100
    wait = throttle.check("alice", "192.0.2.1", 20.0)
    assert wait is not None and wait.reason == "locked"


def test_when_everything_is_locked_the_bound_still_holds() -> None:
    throttle = LoginThrottle(
        ConsoleSettings(login_free_failures=0, login_lock_failures=1, login_table_size=10)
    )
    for index in range(100):
        throttle.failed(f"n{index}", f"a{index}", 0.0)
    assert len(throttle) == 10


def test_long_names_are_remembered_by_a_bounded_key() -> None:
    throttle = LoginThrottle(ConsoleSettings(login_free_failures=100, login_lock_failures=2))
    throttle.failed("x" * 100_000, "a", 0.0)
    throttle.failed("x" * 100_000, "b", 1.0)
    wait = throttle.check("x" * 100_000, "c", 2.0)
    assert wait is not None and wait.reason == "locked"
    assert max(len(key) for _, key in throttle._records) <= 64


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        (None, "unknown"),
        ("", "unknown"),
        ("not-an-address" * 20, ("not-an-address" * 20)[:64]),
    ],
)
def test_addresses_are_keyed_by_what_one_client_controls(remote: str | None, key: str) -> None:
    assert address_key(remote) == key
