"""The login throttle: how many wrong passwords a remote address and a supervisor's name have
given lately, and whether the next attempt may be checked at all.

Pure (Sans-I/O): times come in as arguments (seconds on any monotonic clock), and nothing here
sleeps, logs or reads a clock. `voice.office.login` wraps it.

Two rules, each applied to the address and to the name separately:

- a growing wait: after `login_free_failures` wrong passwords, each further one makes the next
  attempt wait `login_delay_s`, doubled each time, at most `login_max_delay_s`; an attempt
  that comes sooner is refused without its password being checked;
- a lock: `login_lock_failures` wrong passwords within `login_lock_window_s` lock the address
  or the name for `login_lock_s`; while it lasts even the right password is refused.

A right password clears both its address and its name. Unknown names are counted like known
ones, so the throttle tells nobody which names exist.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from voice.config import ConsoleSettings

KEY_CHARS = 64
"""Longest key kept: a supervisor's name has at most 64 characters (`voice.office.auth.NAME`)."""
EVICTION_SCAN = 16
"""Locked entries passed over, at most, when the table is full and one must be forgotten."""

Kind = Literal["name", "address"]


@dataclass(frozen=True)
class Wait:
    """An attempt refused unchecked."""

    reason: Literal["throttled", "locked"]
    retry_after_s: float
    """Seconds until an attempt may be checked again."""


@dataclass(frozen=True)
class Lock:
    """A name or an address just locked."""

    kind: Kind
    key: str
    until: float
    """On the clock the throttle is given."""


@dataclass(slots=True)
class Record:
    """The wrong passwords counted under one name or one address."""

    failures: int = 0
    """Wrong passwords since `since`."""
    since: float = 0.0
    wait_until: float = 0.0
    locked_until: float = 0.0


def address_key(remote: str | None) -> str:
    """What a throttle counts an address by: an IPv4 address as it is, an IPv6 address by its
    /64 (one host is often given a whole /64 to pick addresses from)."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:KEY_CHARS]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class LoginThrottle:
    """Wrong passwords by address and by name. Not thread-safe: use it from one thread (the
    event loop).

    Holds `login_table_size` entries at most (a name and an address are one each): when a new
    one comes, the least recently failed is forgotten, passing over locked ones, so that a flood
    of new names or addresses can neither grow memory nor lift a lock (unless the whole table
    is locked).
    """

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self._records: OrderedDict[tuple[Kind, str], Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def check(self, name: str, address: str, now: float) -> Wait | None:
        """None when an attempt for `name` from `address` may be checked now; else why not and
        for how long. Changes nothing."""
        return worst(wait_of(self._records.get(key), now) for key in keys(name, address))

    def failed(self, name: str, address: str, now: float) -> list[Lock]:
        """Count a wrong password; the locks it set off."""
        locks = []
        for key in keys(name, address):
            record = self._record(key, now)
            if count_failure(record, now, self.settings):
                locks.append(Lock(key[0], key[1], record.locked_until))
        return locks

    def succeeded(self, name: str, address: str) -> None:
        """A right password: forget the name's and the address's failures."""
        for key in keys(name, address):
            self._records.pop(key, None)

    def _record(self, key: tuple[Kind, str], now: float) -> Record:
        record = self._records.get(key)
        if record is not None:
            self._records.move_to_end(key)
            return record
        while len(self._records) >= max(self.settings.login_table_size, 2):
            self._forget_one(now)
        record = self._records[key] = Record(since=now)
        return record

    def _forget_one(self, now: float) -> None:
        for _ in range(min(EVICTION_SCAN, len(self._records))):
            key, record = next(iter(self._records.items()))
            if record.locked_until <= now:
                del self._records[key]
                return
            self._records.move_to_end(key)
        self._records.popitem(last=False)


def keys(name: str, address: str) -> tuple[tuple[Kind, str], tuple[Kind, str]]:
    """What an attempt is counted under: its name, and its address (`address_key`)."""
    return ("name", name[:KEY_CHARS]), ("address", address[:KEY_CHARS])


def wait_of(record: Record | None, now: float) -> Wait | None:
    """Why an attempt counted under `record` may not be checked at `now`, if it may not."""
    if record is None:
        return None
    if record.locked_until > now:
        return Wait("locked", record.locked_until - now)
    if record.wait_until > now:
        return Wait("throttled", record.wait_until - now)
    return None


def worst(waits: Iterable[Wait | None]) -> Wait | None:
    """The longest of the waits, a lock before any mere wait; None when there is none."""
    found = [wait for wait in waits if wait is not None]
    if not found:
        return None
    return max(found, key=lambda w: (w.reason == "locked", w.retry_after_s))


def count_failure(record: Record, now: float, s: ConsoleSettings) -> bool:
    """Count a wrong password at `now` on `record`; whether it locked it."""
    if now - record.since >= s.login_lock_window_s:
        record.failures, record.since = 0, now
    record.failures += 1
    if record.failures >= s.login_lock_failures:
        record.failures, record.since = 0, now
        record.locked_until = now + s.login_lock_s
        return True
    if record.failures > s.login_free_failures:
        doublings = min(record.failures - s.login_free_failures - 1, 30)
        record.wait_until = now + min(s.login_delay_s * 2**doublings, s.login_max_delay_s)
    return False


def remembered_s(s: ConsoleSettings) -> float:
    """How long a record can matter after its last failure: past this it may be forgotten."""
    return max(s.login_lock_window_s, s.login_lock_s, s.login_max_delay_s)
