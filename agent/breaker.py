"""A circuit breaker for the language model: after a run of failures, stop calling it for a while.

Pure: no I/O, and the clock is injected, so the state machine is tested without sleeping. It
only logs when it opens and closes.

- **closed**: every question may call the model. A failure adds one to the run of failures in
  a row; a success ends the run. The `failures`-th failure in a row opens the breaker.
- **open**: no question calls the model until `open_s` after the failure that opened it.
- **half-open**: from then on, the next question is the *trial*: it calls the model while
  questions that come during the trial still do not. The trial's success closes the breaker;
  its failure opens it for another `open_s`. A trial abandoned without an outcome (the caller
  barged in) leaves the next question to be the trial.

Only outcomes count: an answer the caller cut short before the model succeeded or failed is
neither. An answer that started before the breaker opened still reports its outcome: a success
closes the breaker (the model answers after all), a failure only lengthens the run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BreakerState:
    """A snapshot of a breaker, for readiness checks, metrics and logs. Immutable."""

    open: bool
    """True from the failure that opened the breaker until a call succeeds again: questions
    do not reach the model, except the one trial once `retry_at` has passed."""
    failures_in_a_row: int
    """Failures since the last success (it goes on counting while open)."""
    retry_at: float | None
    """When the next question may try the model again, on the breaker's clock
    (`time.monotonic` by default); None while closed."""
    retry_in_s: float | None
    """Seconds from now to `retry_at` (0 once it has passed); None while closed."""
    trial: bool
    """A trial question is with the model now (half-open)."""
    last_failure: str | None
    """Why the last failure happened, in words; None before the first one."""


class Attempt:
    """One call the breaker let through. Report its outcome once: the first report counts,
    later ones are ignored, so a `finally: attempt.abandon()` is always safe."""

    def __init__(self, breaker: CircuitBreaker, trial: bool) -> None:
        self._breaker = breaker
        self.trial = trial
        """True when this is the half-open trial."""
        self._reported = False

    def succeeded(self) -> None:
        """The model answered."""
        if not self._reported:
            self._reported = True
            self._breaker._succeeded(self)

    def failed(self, reason: str) -> None:
        """The model failed and the answer fell back; `reason` is for the log."""
        if not self._reported:
            self._reported = True
            self._breaker._failed(self, reason)

    def abandon(self) -> None:
        """Neither: the answer was closed before the model succeeded or failed (barge-in)."""
        if not self._reported:
            self._reported = True
            self._breaker._abandoned(self)


class CircuitBreaker:
    """Decides whether a question may call the model. One per backend, shared by every call.

    Not thread-safe: use it from one event loop (the answers' generators run there).
    """

    def __init__(
        self,
        failures: int = 3,
        open_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "ollama",
    ) -> None:
        """
        Args:
            failures: failures in a row that open the breaker; 0 or less: never open.
            open_s: seconds the breaker stays open before the trial.
            clock: seconds, monotonic; `time.monotonic` unless a test drives it.
            name: what the log lines call the model.
        """
        self.failures = failures
        self.open_s = open_s
        self._clock = clock
        self._name = name
        self._run = 0
        self._retry_at: float | None = None
        self._trial = False
        self._last_failure: str | None = None

    def attempt(self) -> Attempt | None:
        """An attempt to report on when the model may be called now; None when it may not."""
        if self._retry_at is None:
            return Attempt(self, trial=False)
        if self._trial or self._clock() < self._retry_at:
            return None
        self._trial = True
        log.info("%s: trying again after %d failures in a row", self._name, self._run)
        return Attempt(self, trial=True)

    @property
    def state(self) -> BreakerState:
        retry_in = None if self._retry_at is None else max(0.0, self._retry_at - self._clock())
        return BreakerState(
            open=self._retry_at is not None,
            failures_in_a_row=self._run,
            retry_at=self._retry_at,
            retry_in_s=retry_in,
            trial=self._trial,
            last_failure=self._last_failure,
        )

    def refusal(self) -> str:
        """Why a question does not reach the model now, as a log line's start."""
        state = self.state
        when = (
            "a trial question is with it now"
            if state.trial
            else f"retrying in {state.retry_in_s or 0.0:.1f} s"
        )
        return f"{self._name} skipped: {state.failures_in_a_row} failures in a row, {when}"

    def _succeeded(self, attempt: Attempt) -> None:
        if attempt.trial:
            self._trial = False
        if self._retry_at is not None:
            log.info("%s answers again; every question goes to it", self._name)
        self._run, self._retry_at = 0, None

    def _failed(self, attempt: Attempt, reason: str) -> None:
        self._run += 1
        self._last_failure = reason
        if attempt.trial:
            self._trial = False
            self._open(f"still failing ({reason})")
        elif self._retry_at is None and 0 < self.failures <= self._run:
            self._open(f"{self._run} failures in a row, the last: {reason}")

    def _abandoned(self, attempt: Attempt) -> None:
        if attempt.trial:
            self._trial = False

    def _open(self, why: str) -> None:
        self._retry_at = self._clock() + self.open_s
        seconds = f"{self.open_s:g} s" if math.isfinite(self.open_s) else "ever"
        log.warning(
            "%s: %s; the fallback answers without calling it for %s", self._name, why, seconds
        )
