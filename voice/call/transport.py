"""How a call session reaches its caller, whatever the wire (caller protocol, phone dialect)."""

from __future__ import annotations

import asyncio
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

    async def played(self, turn: int, position_ms: int) -> None:
        """Return once the caller's side reports the reply of `turn` played up to
        `position_ms`; at once on a wire that does not report (`played_ms` None). Never
        returns for a turn whose audio was cleared short of there: wait with a timeout.
        Cancelling it is safe."""
        ...


class PlaybackReports:
    """What the caller's side of a wire that reports playback has said: per turn, the reply
    audio played so far. Reports of a turn whose audio was cleared are ignored (a carrier
    echoes every pending mark at a clear). Used from one event loop."""

    def __init__(self) -> None:
        self._played: dict[int, int] = {}
        self._cleared: set[int] = set()
        self._news = asyncio.Event()
        """Set at each report taken, for the waiters to look again."""

    def played_ms(self, turn: int) -> int:
        return self._played.get(turn, 0)

    def report(self, turn: int, position_ms: int) -> None:
        """The caller's side has played the reply of `turn` up to `position_ms`."""
        if turn in self._cleared:
            return
        self._played[turn] = max(self.played_ms(turn), position_ms)
        self._news.set()

    def clear(self, turn: int) -> None:
        """The reply of `turn` was cleared: what is reported of it from now on is no news."""
        self._cleared.add(turn)

    async def reached(self, turn: int, position_ms: int) -> None:
        """Return once the reply of `turn` was reported played up to `position_ms`."""
        while self.played_ms(turn) < position_ms:
            self._news.clear()
            await self._news.wait()
