"""Which callers a server takes: at most `limits.max_calls` at once, none while it shuts down;
the busy message the others hear; and the message rate a caller may keep up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from voice.channels.codecs import AudioFormat, float_to_int16, int16_to_float, resample


@dataclass
class Admission:
    """The calls a server is serving, against its limit. Used from one event loop."""

    max_calls: int
    active: int = 0
    draining: bool = False
    """True once the server shuts down: no new call is taken."""

    def admit(self) -> bool:
        """Take a call if there is a free line (then `release` it when it ends)."""
        if self.draining or self.active >= self.max_calls:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1


@dataclass
class BusySignal:
    """The busy message, synthesized once; encoded once per caller format on first use."""

    text: str
    audio: np.ndarray
    """Int16 mono at `sample_rate`."""
    sample_rate: int
    _encoded: dict[AudioFormat, bytes] = field(default_factory=dict)

    def encoded(self, audio_format: AudioFormat) -> bytes:
        """The message in a caller's own format."""
        if audio_format not in self._encoded:
            samples = resample(
                int16_to_float(self.audio), self.sample_rate, audio_format.sample_rate
            )
            self._encoded[audio_format] = audio_format.encode(float_to_int16(samples))
        return self._encoded[audio_format]


class MessageRate:
    """A token bucket: `per_s` messages a second on average, `burst_s` seconds' worth at once.
    One per connection: the server's limit on a caller, and the pace `voice.clients.client`
    keeps to."""

    def __init__(
        self, per_s: float, burst_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_s
        self._capacity = max(1.0, per_s * burst_s)
        self._tokens = self._capacity
        self._clock = clock
        self._at = clock()

    def take(self) -> bool:
        """Count one message; False when the caller is over its rate."""
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def wait_s(self) -> float:
        """Seconds until `take` succeeds (0.0 when it would now): how long a sender that keeps
        to the rate waits. A microsecond more than exact, so that floating-point rounding
        cannot leave `take` a hair short after the wait."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate + 1e-6

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
