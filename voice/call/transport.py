"""How a call session reaches its caller, whatever the wire (caller protocol, phone dialect)."""

from __future__ import annotations

from typing import Protocol

from voice.channels import protocol


class CallClosed(Exception):
    """The caller is gone or stalled; the call is being closed. Tasks that see it just stop."""


class Transport(Protocol):
    """How a session talks to its caller. Sends raise CallClosed once the call is over.

    Some wires report which reply audio the caller has really played (a phone carrier echoes
    marks); the others leave `played_ms` to None and the session estimates it from the clock.
    """

    async def send_event(self, event: protocol.Event) -> None:
        """Tell the caller's side what happened; each wire keeps what it can carry."""
        ...

    async def send_audio(self, data: bytes) -> None:
        """Reply audio in the caller's format."""
        ...

    async def mark(self, turn: int, position_ms: int) -> None:
        """The reply audio of `turn` sent so far ends at `position_ms`; a wire that reports
        playback asks to be told when the caller has played up to there."""
        ...

    def played_ms(self, turn: int) -> int | None:
        """How much of the reply of `turn` the caller has played, as reported by their side;
        None when this wire does not report it. Stays put once the turn's audio was cleared."""
        ...
