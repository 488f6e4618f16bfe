"""Watching a call as it happens: the live console, the records and the recording."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from voice.channels import protocol


class CallObserver(Protocol):
    """Sees a call as it happens (the live console, the records, the recording).

    Called on the event loop; implementations must not block or raise.
    """

    def event(self, event: protocol.Event) -> None: ...

    def caller_audio(self, samples: np.ndarray) -> None:
        """The caller's audio, 16 kHz float32, as it arrives."""
        ...

    def reply_audio(self, samples: np.ndarray) -> None:
        """Reply audio as it is sent: int16 at the caller's rate."""
        ...

    def reply_cleared(self) -> None:
        """The reply was interrupted: audio sent ahead of playback was never heard."""
        ...


class Unobserved:
    """The observer of a call nobody watches."""

    def event(self, event: protocol.Event) -> None:
        pass

    def caller_audio(self, samples: np.ndarray) -> None:
        pass

    def reply_audio(self, samples: np.ndarray) -> None:
        pass

    def reply_cleared(self) -> None:
        pass


class Observers:
    """Several observers of one call, each told everything, in order."""

    def __init__(self, *observers: CallObserver) -> None:
        self._observers = observers

    def event(self, event: protocol.Event) -> None:
        for observer in self._observers:
            observer.event(event)

    def caller_audio(self, samples: np.ndarray) -> None:
        for observer in self._observers:
            observer.caller_audio(samples)

    def reply_audio(self, samples: np.ndarray) -> None:
        for observer in self._observers:
            observer.reply_audio(samples)

    def reply_cleared(self) -> None:
        for observer in self._observers:
            observer.reply_cleared()
