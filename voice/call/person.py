"""A person on a call: who attends it (`Attendance`), and the ear that turns the speech of the
supervisor who holds it into `person.said` turns (`PersonEar`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from voice.call.turns import TurnDetector, TurnEnded, hear_waiting
from voice.config import TurnSettings
from voice.ops.services import Services

log = logging.getLogger(__name__)

State = Literal["assistant", "waiting", "person", "missed"]

EAR_QUEUE_FRAMES = 200
"""Frames of the person's speech waiting to be heard; beyond it they are dropped (the
transcript loses them, the caller does not)."""


class CallHeld(Exception):
    """Another person holds the call."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"{holder} has this call.")
        self.holder = holder


class NotHolding(Exception):
    """The person does not hold the call (nobody does, or somebody else)."""


@dataclass
class Attendance:
    """Who attends a call. Belongs to one call."""

    state: State = "assistant"
    """"assistant": the assistant answers; "waiting": handed off, in the queue, on hold;
    "person": `name` holds the call; "missed": nobody took it in time."""
    name: str = ""
    """The supervisor holding the call ("person"), or who handed it back."""
    reason: str = ""
    """Why it was handed off."""
    since: float = field(default_factory=time.time)
    """Unix time of the last change."""

    @property
    def waiting(self) -> bool:
        """Handed off, in the queue: nobody holds the call yet."""
        return self.state == "waiting"

    @property
    def answering(self) -> bool:
        """The assistant answers the caller's questions."""
        return self.state == "assistant"

    def change(self, state: State, name: str = "", reason: str = "") -> None:
        self.state, self.name, self.reason, self.since = state, name, reason, time.time()


class PersonEar:
    """Hears the person holding a call: their speech (16 kHz float32), through the server's
    VAD and turn detection, and each utterance through the server's recognizer, given to
    `said`. Runs while `run` runs; `hear` never waits."""

    def __init__(
        self,
        services: Services,
        turns: TurnSettings,
        said: Callable[[str], Awaitable[None]],
        language: str | None = None,
    ) -> None:
        self._services = services
        self._vad = services.vad.stream()
        self._turns = TurnDetector(turns)
        self._said = said
        self._language = language
        self._queue: asyncio.Queue[np.ndarray] = asyncio.Queue(EAR_QUEUE_FRAMES)
        self._dropped = 0

    def hear(self, samples: np.ndarray) -> None:
        try:
            self._queue.put_nowait(samples)
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("the person's speech comes faster than it is heard; some is dropped")

    async def run(self) -> None:
        """Hear until cancelled; the words of an utterance cut off by the cancel are lost."""
        while True:
            events = await hear_waiting(self._queue, self._vad, self._turns)
            for event in events:
                if isinstance(event, TurnEnded):
                    await self._transcribe(event.audio)

    async def _transcribe(self, audio: np.ndarray) -> None:
        try:
            heard = await self._services.transcriber.transcribe(
                audio, language=self._language, urgent=False
            )
        except Exception as err:  # the call goes on; only this transcript is lost
            log.error("the person's words could not be recognized: %r", err)
            return
        if heard.text.strip():
            await self._said(heard.text.strip())
