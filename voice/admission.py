"""Which callers a server takes: at most `limits.max_calls` at once, none while it shuts down;
the busy message the others hear; and the message rate a caller may keep up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from voice.codecs import AudioFormat, float_to_int16, int16_to_float, resample

CLOSE_BUSY = 1013
"""Close code for a caller turned away because every line is taken ("try again later")."""


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
    One per connection."""

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
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
