"""What a caller hears while a handed-off call waits for a person: the hold message once, then
a quiet generated chime with a reminder spoken every so often (`HoldAudio`, pure), played into
the call at the pace it plays (`play`)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import numpy as np

from voice.call.clock import Clock

CHIME_NOTES_HZ = (523.25, 659.25, 783.99, 659.25)
"""A soft major arpeggio (C5 E5 G5 E5)."""
CHIME_NOTE_S = 0.45
CHIME_RING_S = 1.4
"""How long each note rings out (an exponential decay to -40 dB)."""
CHIME_CYCLE_S = 6.0
"""One arpeggio, then quiet until the next."""


def chime(rate: int, volume: float) -> np.ndarray:
    """One cycle of the hold chime: int16 at `rate`, its peak at `volume` of full scale."""
    cycle = np.zeros(round(CHIME_CYCLE_S * rate), np.float64)
    ring = round(CHIME_RING_S * rate)
    t = np.arange(ring) / rate
    decay = np.exp(-t * math.log(100) / CHIME_RING_S)
    attack = np.minimum(1.0, t / 0.01)  # 10 ms: no click at the note's start
    for index, hz in enumerate(CHIME_NOTES_HZ):
        start = round(index * CHIME_NOTE_S * rate)
        note = np.sin(2 * math.pi * hz * t) * decay * attack
        end = min(len(cycle), start + ring)
        cycle[start:end] += note[: end - start]
    peak = float(np.max(np.abs(cycle))) or 1.0
    return (cycle / peak * volume * 32767).astype(np.int16)


class HoldAudio:
    """The endless hold audio at one rate: `message`, then the chime, with `reminder` after
    every `reminder_every_s` of chime. Pure: `read` returns the next samples."""

    def __init__(
        self,
        rate: int,
        message: np.ndarray,
        reminder: np.ndarray,
        reminder_every_s: float,
        volume: float,
    ) -> None:
        """`message`, `reminder`: int16 speech at `rate` (either may be empty)."""
        self._chime = chime(rate, volume)
        self._reminder = reminder
        self._chime_between = max(1, round(reminder_every_s * rate))
        self._segment = message
        self._at = 0
        self._reminding = True
        """The current segment is speech (the message or a reminder), not chime."""

    def read(self, count: int) -> np.ndarray:
        """The next `count` samples, int16."""
        out = np.empty(count, np.int16)
        filled = 0
        while filled < count:
            if self._at >= len(self._segment):
                self._next_segment()
                continue
            take = min(count - filled, len(self._segment) - self._at)
            out[filled : filled + take] = self._segment[self._at : self._at + take]
            filled += take
            self._at += take
        return out

    def _next_segment(self) -> None:
        self._at = 0
        if self._reminding or not len(self._reminder):
            repeats = math.ceil(self._chime_between / len(self._chime))
            self._segment = np.tile(self._chime, repeats)[: self._chime_between]
            self._reminding = False
        else:
            self._segment = self._reminder
            self._reminding = True


async def play(
    read: Callable[[int], np.ndarray],
    send: Callable[[np.ndarray], Awaitable[None]],
    rate: int,
    frame_ms: int,
    lead_ms: int,
    clock: Clock,
) -> None:
    """Send `read`'s audio in `frame_ms` frames at the pace it plays, at most `lead_ms` ahead
    of the clock, until cancelled. `send` takes an int16 frame."""
    step = max(1, rate * frame_ms // 1000)
    started = clock.now()
    sent = 0
    while True:
        ahead_ms = sent * 1000 / rate - (clock.now() - started) * 1000
        if ahead_ms > lead_ms:
            await clock.sleep((ahead_ms - lead_ms) / 1000)
        await send(read(step))
        sent += step
