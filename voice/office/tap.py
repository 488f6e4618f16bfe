"""A live call's audio for the supervisors who listen in: the caller's side and the assistant's
side (replies, hold audio, a person's speech) as separate 16 kHz streams, which the console page
mixes (docs/console.md, "Listening in"). Frames go out as they come, never waiting: a listener
that falls `LISTENER_FRAMES` behind is dropped, so that no listener can slow a call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import numpy as np

from voice.channels import protocol
from voice.channels.codecs import LiveResampler, float_to_int16, int16_to_float

log = logging.getLogger(__name__)

TAP_RATE = 16_000
CALLER = 1
"""The first byte of a frame of the caller's audio."""
ASSISTANT = 2
"""The first byte of a frame of what the caller hears from this side: a reply, hold audio,
the speech of the person holding the call."""
CLEAR = 3
"""The first byte of a frame with no audio: drop the assistant's audio buffered so far (a reply
was cut off; what was sent ahead of it will not be heard)."""
LISTENER_FRAMES = 500
"""Frames a listener may fall behind by (tens of seconds of audio) before it is dropped."""


class Listener:
    """One supervisor's ear on a call. Iterate it for frames (`kind` byte + PCM16 LE at
    `TAP_RATE`); it ends when the call ends or the listener is dropped."""

    def __init__(self, tap: AudioTap) -> None:
        self._tap = tap
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(LISTENER_FRAMES)
        self.dropped = False
        """It fell behind and was dropped."""

    def offer(self, frame: bytes) -> bool:
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    def end(self) -> None:
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (frame := await self._queue.get()) is not None:
            yield frame

    def close(self) -> None:
        self._tap.unlisten(self)


class AudioTap:
    """Implements `CallObserver` for one call's listeners; does nothing while nobody listens.
    Used from the call's event loop."""

    def __init__(self, caller_rate: int) -> None:
        self._resampler = LiveResampler(caller_rate, TAP_RATE)
        self._listeners: set[Listener] = set()
        self._closed = False

    def listen(self) -> Listener:
        """A new listener, hearing the call from now on (ended at once if the call is over)."""
        listener = Listener(self)
        if self._closed:
            listener.end()
        else:
            self._listeners.add(listener)
        return listener

    def unlisten(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def close(self) -> None:
        """The call is over: every listener's stream ends."""
        self._closed = True
        for listener in list(self._listeners):
            self.unlisten(listener)
            listener.end()

    # ------------------------------------------------------------ CallObserver

    def event(self, event: protocol.Event) -> None:
        pass

    def caller_audio(self, samples: np.ndarray) -> None:
        if self._listeners:
            self._offer(CALLER, float_to_int16(samples))

    def reply_audio(self, samples: np.ndarray) -> None:
        if self._listeners:
            resampled = self._resampler.process(int16_to_float(samples))
            if len(resampled):
                self._offer(ASSISTANT, float_to_int16(resampled))

    def reply_cleared(self) -> None:
        if self._listeners:
            self._offer(CLEAR, np.zeros(0, np.int16))

    def _offer(self, kind: int, samples: np.ndarray) -> None:
        frame = bytes([kind]) + samples.astype("<i2").tobytes()
        for listener in list(self._listeners):
            if not listener.offer(frame):
                log.warning("a supervisor listening in fell behind; dropped")
                self.unlisten(listener)
                listener.dropped = True
                listener.end()
