"""The spool between live calls and the store: a store that is slow, locked or full never slows
or breaks a call, and loses nothing once it recovers."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from voice.office.records import (
    CallAction,
    CallDetail,
    CallQuery,
    CallRecord,
    DayCounts,
    Feedback,
    GapQuestion,
    Store,
    TurnRecord,
)

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.5
"""First wait before retrying a failed write; doubled after each failure up to RETRY_MAX_S."""
RETRY_MAX_S = 5.0
WARN_EVERY = 10_000
"""An error is logged each time this many more records are waiting in memory."""
MAX_QUEUED = 100_000
"""Writes kept in memory while the store is down (a few hundred bytes each: tens of MB); past
this the oldest waiting write is dropped, and counted in `dropped`."""
MAX_SET_ASIDE = 1000
"""Writes kept in `failed`; older ones are forgotten (they were logged when set aside)."""
MAX_ATTEMPTS = 5
"""Tries for a write whose error is not transient before it is set aside (see `failed`)."""
CLOSE_TIMEOUT_S = 10.0


STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error, OSError)
"""What a store raises when it cannot read or write (SQLite, PostgreSQL, the disk)."""


def one_line(err: BaseException) -> str:
    """A store's error in one line (libpq's messages run over several)."""
    return " ".join(str(err).split())


def is_transient(err: BaseException) -> bool:
    """Errors a retry can outlast: I/O errors (disk full), "database is locked", "database or
    disk is full", a damaged or missing file an operator can put back, a PostgreSQL server
    that cannot be reached or is restarting."""
    return (
        isinstance(err, OSError | sqlite3.OperationalError | psycopg.OperationalError)
        or type(err) is sqlite3.DatabaseError
    )


@dataclass(frozen=True)
class Write:
    """One spooled write: a `Store` method's name and its arguments."""

    method: str
    args: tuple[Any, ...]

    def __str__(self) -> str:
        """Which record, without what was said in it (for logs at the default level)."""
        first = self.args[0] if self.args else None
        call_id = getattr(first, "call_id", first)
        turn = getattr(first, "turn", None)
        return f"{self.method} of call {call_id}" + (f" turn {turn}" if turn is not None else "")


class SpooledStore:
    """A `Store` for live calls: writes are queued and applied in order by one worker thread.

    Writes (`start_call`, `end_call`, `add_turn`, `add_feedback`) never wait on I/O: they append
    to an in-memory queue under a lock held for microseconds, so they are safe on the event loop
    and from any thread. The worker applies them to `inner` one by one, in order. A write that
    fails is retried with backoff (`RETRY_MIN_S` doubling to `RETRY_MAX_S`), and later writes wait
    behind it so order is kept; the first failure of an outage is logged as an error, and the
    recovery as a warning. While the store is down records pile up in memory (an error is logged
    every `WARN_EVERY` records), because memory is the lesser evil next to losing records or
    stalling calls, up to `max_queued` writes: past that, the oldest waiting write is dropped,
    logged and counted in `dropped`, so that no outage (or flood) grows memory without bound. A
    write whose error is not transient (`is_transient`: a
    bug, not an outage) is tried `MAX_ATTEMPTS` times, then logged with its record and kept in
    `failed` so the rest can go on.

    Reads (`calls`, `call`, `gaps`, `daily`) and `purge` go straight to `inner` on the calling
    thread: they block (call them via `asyncio.to_thread`), they raise while the store is down,
    and they do not see writes still in the queue (`flush` first where that matters).
    """

    def __init__(
        self,
        inner: Store,
        *,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
        warn_every: int = WARN_EVERY,
        max_attempts: int = MAX_ATTEMPTS,
        max_queued: int = MAX_QUEUED,
        transient: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        self.inner = inner
        self.failed: deque[Write] = deque(maxlen=MAX_SET_ASIDE)
        """The latest writes set aside after failing with an error that is not transient."""
        self.dropped = 0
        """Writes dropped because `max_queued` were waiting."""
        self._max_queued = max(max_queued, 2)
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._warn_every = max(warn_every, 1)
        self._max_attempts = max(max_attempts, 1)
        self._transient = transient
        self._queue: deque[Write] = deque()
        self._cond = threading.Condition()
        self._closed = False
        """No more writes are taken."""
        self._abandon = False
        """The worker stops at once, leaving what is queued."""
        self._outage_since: float | None = None
        self._worker = threading.Thread(target=self._run, name="voicedesk-store", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------ writes: queued

    def start_call(self, call: CallRecord) -> None:
        self._put(Write("start_call", (call,)))

    def end_call(self, call_id: str, ended_at: float, reason: str, recording: str | None) -> None:
        self._put(Write("end_call", (call_id, ended_at, reason, recording)))

    def add_turn(self, turn: TurnRecord) -> None:
        self._put(Write("add_turn", (turn,)))

    def add_feedback(self, feedback: Feedback) -> None:
        self._put(Write("add_feedback", (feedback,)))

    def add_action(self, action: CallAction) -> None:
        self._put(Write("add_action", (action,)))

    def _put(self, write: Write) -> None:
        with self._cond:
            if self._closed:
                log.error("store closed; record not kept: %s", write)
                log.debug("the record not kept: %r", write)
                return
            dropped = None
            if len(self._queue) >= self._max_queued:
                # The oldest write not being applied: the first may be in the worker's hands.
                dropped = self._queue[1]
                del self._queue[1]
                self.dropped += 1
            self._queue.append(write)
            waiting = len(self._queue)
            self._cond.notify_all()
        if dropped is not None:
            if self.dropped == 1 or self.dropped % self._warn_every == 0:
                log.error(
                    "%d records wait for the store, the most it keeps; %d dropped so far, the "
                    "oldest first (this one: %s)",
                    waiting,
                    self.dropped,
                    dropped,
                )
            log.debug("the record dropped: %r", dropped)
        elif waiting % self._warn_every == 0:
            log.error("%d records wait in memory for the store; nothing is lost yet", waiting)

    # ------------------------------------------------------------ reads: straight through

    def calls(self, query: CallQuery) -> Sequence[CallRecord]:
        return self.inner.calls(query)

    def call(self, call_id: str) -> CallDetail | None:
        return self.inner.call(call_id)

    def gaps(self, since: float, limit: int = 20) -> Sequence[GapQuestion]:
        return self.inner.gaps(since, limit)

    def daily(self, since: float) -> Sequence[DayCounts]:
        return self.inner.daily(since)

    def purge(self, before: float) -> int:
        return self.inner.purge(before)

    # ------------------------------------------------------------ state

    @property
    def pending(self) -> int:
        """Writes not yet applied (including one being applied now)."""
        with self._cond:
            return len(self._queue)

    @property
    def failing(self) -> bool:
        """True while the store is down (the last write failed and is being retried)."""
        return self._outage_since is not None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write is applied; False if `timeout` (seconds) passed first.

        Blocks: for tests and shutdown, not the event loop."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue, timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop taking writes, wait up to `timeout` seconds for the queue to drain, stop the
        worker and close `inner`. Writes still queued then (the store stayed down) are lost:
        each is logged as an error with its record. Blocks."""
        with self._cond:
            self._closed = True
        drained = self.flush(timeout)
        with self._cond:
            self._abandon = True
            left = list(self._queue)
            self._cond.notify_all()
        for write in left:
            log.error("store down at shutdown; record lost: %s", write)
            log.debug("the record lost: %r", write)
        self._worker.join(max(timeout, 1.0))
        if self._worker.is_alive():
            log.error("store worker still busy at shutdown; the store is left open")
            return
        if not drained:
            log.error("%d record(s) lost: the store did not recover before shutdown", len(left))
        self.inner.close()

    # ------------------------------------------------------------ the worker

    def _run(self) -> None:
        delay, attempts = self._retry_min_s, 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed or self._abandon)
                if self._abandon or not self._queue:
                    return
                write = self._queue[0]
            try:
                getattr(self.inner, write.method)(*write.args)
            except Exception as err:
                attempts += 1
                if not self._transient(err) and attempts >= self._max_attempts:
                    log.exception("store write failed %d times; set aside: %s", attempts, write)
                    self.failed.append(write)
                else:
                    self._note_failure(err)
                    with self._cond:
                        self._cond.wait_for(lambda: self._abandon, delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
            else:
                self._note_success()
            delay, attempts = self._retry_min_s, 0
            with self._cond:
                self._queue.popleft()
                self._cond.notify_all()

    def _note_failure(self, err: Exception) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.error(
                "store write failed (%s: %s); %d record(s) kept in memory and retried",
                type(err).__name__,
                err,
                self.pending,
            )

    def _note_success(self) -> None:
        if self._outage_since is not None:
            log.warning(
                "store recovered after %.1f s; %d record(s) still to write",
                time.monotonic() - self._outage_since,
                self.pending - 1,
            )
            self._outage_since = None
