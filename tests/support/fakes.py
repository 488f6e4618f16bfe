"""Scripted stand-ins for the slow parts, for timing-controlled pipeline tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from agent.types import AnswerEnd, AnswerEvent, AnswerText, Exchange


@dataclass
class ScriptedAgent:
    """Answers every question with `reply`, after `first_text_s`, in `pieces` separated by
    `piece_s`. Records what it was asked and with what memory."""

    reply: str = "The bulb flashes red when Wi-Fi fails. Use a 2.4 GHz network and add it again."
    sources: tuple[str, ...] = ("troubleshooting#4.2",)
    first_text_s: float = 0.0
    piece_s: float = 0.0
    asked: list[tuple[str, list[Exchange]]] = field(default_factory=list)

    async def answer(
        self, question: str, memory: Sequence[Exchange], *, heard_clearly: bool = True
    ) -> AsyncIterator[AnswerEvent]:
        self.asked.append((question, list(memory)))
        await asyncio.sleep(self.first_text_s)
        for word in self.reply.split(" "):
            yield AnswerText(word + " ")
            if self.piece_s:
                await asyncio.sleep(self.piece_s)
        yield AnswerEnd(sources=self.sources, backend="scripted")

    def vocabulary(self) -> str:
        return "Brightnest smart bulb Wi-Fi"


class FastClock:
    """A `voice.call.clock.Clock` that runs `speed` times faster than the wall clock: a call
    paced on it (the server's replies, the carrier's playback, the caller's line) goes by in
    1/`speed` of the time, every position and mark the same as in real time."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._origin) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)


class Clock:
    """A clock the test moves by hand: `clock.now += 5`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
