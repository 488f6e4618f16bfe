"""A live call's audio for the supervisors who listen in: the caller's side and the assistant's
side (replies, hold audio, a person's speech) as separate 16 kHz streams, which the console page
mixes (docs/console.md, "Listening in"). Frames go out as they come, never waiting: a listener
that falls `LISTENER_FRAMES` behind is dropped, so that no listener can slow a call."""

from __future__ import annotations

import logging

import numpy as np

from voice.call.observer import Unobserved
from voice.channels.codecs import LiveResampler, float_to_int16, int16_to_float
from voice.office.live import Subscription

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


Listener = Subscription[bytes]
"""One supervisor's ear on a call: frames (`kind` byte + PCM16 LE at `TAP_RATE`), until the call
ends or the listener is dropped (`dropped`)."""


class AudioTap(Unobserved):
    """A `CallObserver` of one call's audio for its listeners (events are not its business);
    does nothing while nobody listens. Used from the call's event loop."""

    def __init__(self, caller_rate: int) -> None:
        self._resampler = LiveResampler(caller_rate, TAP_RATE)
        self._listeners: set[Listener] = set()
        self._closed = False

    def listen(self) -> Listener:
        """A new listener, hearing the call from now on (ended at once if the call is over)."""
        listener = Listener(LISTENER_FRAMES, self.unlisten)
        if self._closed:
            listener.end(dropped=False)
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
            listener.end(dropped=False)

    # ------------------------------------------------------------ CallObserver

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
                listener.end()
