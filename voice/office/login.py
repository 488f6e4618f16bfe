"""Supervisor logins, kept off the call path: the throttle in front, and behind it one password
check at a time, in a thread of its own at a lower priority.

A password check is scrypt: about 50-100 ms of one core and 32 MiB (`voice.office.auth.Scrypt`). Run
from `asyncio.to_thread` as before, twenty wrong logins at once were twenty hashes at once on a
2-core machine, and a caller's replies stalled. Now:

- at most one hash runs at a time, in one dedicated thread, so logins take one core at most
  and 32 MiB, whatever comes in;
- at most `console.login_max_waiting` logins wait for it; more are refused at once
  (`login_busy`);
- on Linux that thread runs at nice `HASH_NICENESS`: there a nice value belongs to a thread
  (setpriority(2)), so the event loop and the speech workers go first when the cores are
  busy. Elsewhere it runs at normal priority, and the first two bounds are what protects calls;
- the throttle (`voice.office.throttle`) refuses most of a flood before it costs a hash; it is asked
  again when a login's turn comes, so the logins queued behind a wrong password see it.

A login's outcome is counted even when its client goes away while it waits: dropping the
connection does not take a guess off the record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from voice.config import ConsoleSettings
from voice.office.auth import Users
from voice.office.spool import STORE_ERRORS
from voice.office.throttle import Lock, LoginThrottle, Wait, address_key

log = logging.getLogger(__name__)

HASH_NICENESS = 10
"""Added to the nice value of the password-checking thread where the OS allows it per thread.
At 10 it gets about a tenth of a core's time while the call path keeps the cores busy, so a
check then takes up to ten times as long; a supervisor waits a second, not a caller."""
T = TypeVar("T")
SHARED_RETRY_S = 10.0
"""After the shared counts failed, logins are counted here alone this long before Redis is
tried again, so that an outage does not add Redis's timeout to every login."""
BUSY_RETRY_S = 1.0
"""Retry-After for `login_busy`."""

Result = Literal["ok", "wrong", "throttled", "locked", "busy", "unavailable"]
"""What became of a login (the `result` label of `voicedesk_logins_total`)."""


@dataclass(frozen=True)
class Outcome:
    result: Result
    token: str | None = None
    """The new session's token, for `ok`."""
    retry_after_s: float = 0.0
    """For `throttled`, `locked` and `busy`: seconds until a new attempt may be checked."""


class Counts(Protocol):
    """Where the throttle's counts of wrong passwords are kept: in the server
    (`InProcessCounts`), or in Redis for every server of a deployment
    (`voice.office.shared_throttle.SharedCounts`)."""

    async def check(self, name: str, address: str) -> Wait | None:
        """`LoginThrottle.check`, now."""
        ...

    async def failed(self, name: str, address: str) -> list[Lock]:
        """`LoginThrottle.failed`, now."""
        ...

    async def succeeded(self, name: str, address: str) -> None:
        """`LoginThrottle.succeeded`."""
        ...

    async def close(self) -> None: ...


class InProcessCounts:
    """Implements `Counts` with a `LoginThrottle` on `clock` (monotonic seconds)."""

    def __init__(self, throttle: LoginThrottle, clock: Callable[[], float]) -> None:
        self.throttle = throttle
        self._clock = clock

    async def check(self, name: str, address: str) -> Wait | None:
        return self.throttle.check(name, address, self._clock())

    async def failed(self, name: str, address: str) -> list[Lock]:
        return self.throttle.failed(name, address, self._clock())

    async def succeeded(self, name: str, address: str) -> None:
        self.throttle.succeeded(name, address)

    async def close(self) -> None:
        pass


class Logins:
    """The login desk of one server. Use it from one event loop; `close()` at shutdown.

    Args:
        users: The supervisors; `Users.login` runs in this desk's own thread.
        settings: The throttle's and the queue's limits.
        clock: Monotonic seconds, for the throttle in the server; tests pass their own.
        shared: The throttle's counts shared with the other servers (in Redis); while they
            cannot be reached, the server counts on its own.
    """

    def __init__(
        self,
        users: Users,
        settings: ConsoleSettings,
        clock: Callable[[], float] = time.monotonic,
        shared: Counts | None = None,
    ) -> None:
        self.settings = settings
        self.throttle = LoginThrottle(settings)
        self._own = InProcessCounts(self.throttle, clock)
        self._shared = shared
        self._shared_again_at = 0.0
        """While Redis is unreachable, the shared counts are not tried before this."""
        self._told_down = False
        self._users = users
        self._turn = asyncio.Semaphore(1)
        self._admitted = 0
        """Logins being checked or waiting for their turn."""
        self._attempts: set[asyncio.Task[Outcome]] = set()
        self._thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="login", initializer=_lower_priority
        )

    async def login(self, name: str, password: str, remote: str | None) -> Outcome:
        """Check `name` and `password` from the remote address `remote`.

        Refusals (throttled, locked, busy) are answered after `login_refusal_delay_s`.
        Cancelling this is safe: the attempt goes on and is counted."""
        address = address_key(remote)
        wait = await self._counted(lambda counts: counts.check(name, address))
        if wait is not None:
            return await self._refuse(Outcome(wait.reason, retry_after_s=wait.retry_after_s))
        if self._admitted > self.settings.login_max_waiting:
            return await self._refuse(Outcome("busy", retry_after_s=BUSY_RETRY_S))
        self._admitted += 1
        attempt = asyncio.create_task(self._attempt(name, password, address))
        self._attempts.add(attempt)
        attempt.add_done_callback(self._attempts.discard)
        outcome = await asyncio.shield(attempt)
        if outcome.result in ("throttled", "locked"):
            return await self._refuse(outcome)
        return outcome

    async def _attempt(self, name: str, password: str, address: str) -> Outcome:
        try:
            async with self._turn:
                wait = await self._counted(lambda counts: counts.check(name, address))
                if wait is not None:  # a login ahead in the queue was wrong
                    return Outcome(wait.reason, retry_after_s=wait.retry_after_s)
                loop = asyncio.get_running_loop()
                try:
                    token = await loop.run_in_executor(
                        self._thread, self._users.login, name, password
                    )
                except STORE_ERRORS as err:
                    log.error("supervisor login failed: the supervisors' store: %s", err)
                    return Outcome("unavailable")
                if token is None:
                    await self._count_failure(name, address)
                    return Outcome("wrong")
                await self._counted(lambda counts: counts.succeeded(name, address))
                return Outcome("ok", token=token)
        finally:
            self._admitted -= 1

    async def _counted(self, ask: Callable[[Counts], Awaitable[T]]) -> T:
        """What `ask` gets of the shared counts, or of this server's own while the shared ones
        cannot be reached (or there are none)."""
        now = time.monotonic()
        if self._shared is not None and now >= self._shared_again_at:
            from voice.office.shared_throttle import SHARED_ERRORS

            try:
                found = await ask(self._shared)
                self._told_down = False
                return found
            except SHARED_ERRORS as err:
                if not self._told_down:
                    log.error("login throttle: Redis is unreachable, counted here alone: %s", err)
                    self._told_down = True
                self._shared_again_at = now + SHARED_RETRY_S
        return await ask(self._own)

    async def _count_failure(self, name: str, address: str) -> None:
        s = self.settings
        for lock in await self._counted(lambda counts: counts.failed(name, address)):
            log.warning(
                "supervisor logins locked for %s %r for %.0f s: %d wrong passwords within %.0f s",
                lock.kind,
                lock.key,
                s.login_lock_s,
                s.login_lock_failures,
                s.login_lock_window_s,
            )

    async def _refuse(self, outcome: Outcome) -> Outcome:
        await asyncio.sleep(self.settings.login_refusal_delay_s)
        return outcome

    async def close(self) -> None:
        """End the logins in progress and the thread (a hash in progress finishes first)."""
        for attempt in list(self._attempts):
            attempt.cancel()
        await asyncio.gather(*self._attempts, return_exceptions=True)
        await asyncio.to_thread(self._thread.shutdown, wait=True, cancel_futures=True)
        if self._shared is not None:
            await self._shared.close()


def _lower_priority() -> None:
    """Runs first in the password-checking thread. Linux only: elsewhere the id of a thread is
    no process id, and setpriority would renice the process or another one."""
    if sys.platform != "linux":
        return
    try:
        thread = threading.get_native_id()
        niceness = min(os.getpriority(os.PRIO_PROCESS, thread) + HASH_NICENESS, 19)
        os.setpriority(os.PRIO_PROCESS, thread, niceness)
    except OSError as err:
        log.debug("the login thread keeps its priority: %r", err)
