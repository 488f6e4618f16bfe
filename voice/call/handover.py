"""A call once it is handed off (docs/protocol.md, "A person takes the call"): it waits on hold
in the console's queue, a person takes it and speaks, hands it back; or nobody comes, and the
caller is asked to call back or to leave a message.

`Handover` keeps that part of one call; the `CallSession` holding it reaches the caller for it
through a `CallSide` and decides, under its turn lock, when a person takes or gives back the
call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.types import Exchange
from voice.call import hold
from voice.call.hold import HoldAudio
from voice.call.person import Attendance, NotHolding, PersonEar
from voice.call.reply import Script, Speaker
from voice.channels import protocol
from voice.channels.codecs import AudioFormat, LiveResampler, float_to_int16, int16_to_float
from voice.ops.services import Services

log = logging.getLogger(__name__)

PERSON_RATE = 16_000
"""The rate of a person's speech as the console page sends it."""
HOLD = "hold"
"""`reply.end.backend` of the words said while a handed-off call waits (a missed handoff)."""
MESSAGE = "message"
"""The rule recorded on the turn of a message left after a missed handoff."""
MISSED_HANDOFF = "missed_handoff"
"""The end reason of a call nobody took in time."""
HOLD_TURN = 0
"""The turn a `clear` names when it drops hold audio (no reply has that number)."""
TONE_HZ = 1000.0
TONE_S = 0.4


@dataclass(frozen=True)
class CallSide:
    """What a `Handover` does to its call through the session."""

    send: Callable[[protocol.Event], Awaitable[None]]
    """An event to the caller and the call's observers."""
    send_audio: Callable[[np.ndarray], Awaitable[None]]
    """Audio that is no reply (int16 at the caller's rate), sent and recorded."""
    speak: Callable[[Script, int | None], Awaitable[None]]
    """Say a script as the reply of a turn (None: a turn of its own), until it has played."""
    replying: Callable[[], bool]
    """A reply is being said."""
    remember: Callable[[Exchange], None]
    """An exchange into the call's memory."""
    next_turn: Callable[[], int]
    hang_up: Callable[[str], None]
    """End the call, for the reason given."""
    spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]
    """Start a task of the call's (closing the call stops it)."""


class Handover:
    """Who attends one call, and what a handed-off call hears and does. Belongs to one call and
    its event loop."""

    def __init__(
        self,
        services: Services,
        audio: AudioFormat,
        speaker: Speaker,
        call: CallSide,
        language: str | None = None,
    ) -> None:
        self._services = services
        self._settings = services.settings
        self._format = audio
        self._speaker = speaker
        self._call = call
        self._language = language
        self.attendance = Attendance()
        self._holding: asyncio.Task[None] | None = None
        """The hold audio and what follows it when nobody comes (`_hold`)."""
        self._ear: PersonEar | None = None
        self._ear_task: asyncio.Task[None] | None = None
        self._resampler = LiveResampler(PERSON_RATE, audio.sample_rate)
        self._caller_words: list[str] = []
        """What the caller said since the person holding the call last spoke."""
        self._message: asyncio.Future[tuple[int, str]] | None = None
        """A message the caller is asked to leave after a missed handoff: (turn, words)."""

    async def wait_for_person(self, reason: str) -> None:
        """The call waits for a person in the queue, on hold; not when it waits or is held
        already."""
        if not self.attendance.answering:
            return
        self.attendance.change("waiting", reason=reason)
        await self._send_attendance()
        self._holding = self._call.spawn(self._hold())

    async def stop_holding(self) -> None:
        """Stop the hold audio (and what follows it), dropping what the caller has buffered of
        it. Call it before stopping a reply, so that nothing new is begun meanwhile."""
        holding, self._holding = self._holding, None
        if holding is None or holding.done():
            return
        holding.cancel()
        await asyncio.gather(holding, return_exceptions=True)
        await self._call.send(protocol.Clear(turn=HOLD_TURN))

    async def taken(self, name: str) -> None:
        """`name` holds the call now (the session stopped its reply and the hold audio)."""
        self._caller_words.clear()
        self.attendance.change("person", name=name)
        self._ear = PersonEar(self._services, self._settings.turns, self._said, self._language)
        self._ear_task = self._call.spawn(self._ear.run())
        await self._send_attendance()

    async def given_back(self, name: str) -> None:
        """`name` gave the call back to the assistant."""
        if self._ear_task is not None:
            self._ear_task.cancel()
        self._ear = self._ear_task = None
        self.attendance.change("assistant", name=name)
        await self._send_attendance()

    async def person_audio(self, name: str, frame: bytes) -> None:
        """Speech of `name`: PCM16 little-endian mono at 16 kHz, to the caller in the caller's
        own format, recorded, and transcribed.

        Raises:
            NotHolding: `name` does not hold the call.
        """
        if self.attendance.state != "person" or self.attendance.name != name:
            raise NotHolding()
        samples = int16_to_float(np.frombuffer(frame[: len(frame) // 2 * 2], "<i2"))
        if self._ear is not None:
            self._ear.hear(samples)
        out = float_to_int16(self._resampler.process(samples))
        if len(out):
            await self._call.send_audio(out)

    async def caller_said(self, turn: int, text: str) -> None:
        """The caller said (or typed) `text` while the assistant does not answer: kept in the
        transcript; a message, when one is asked for."""
        await self._call.send(protocol.FinalTranscript(turn=turn, text=text, ignored=not text))
        if not text:
            return
        self._caller_words.append(text)
        if self._message is not None and not self._message.done():
            self._message.set_result((turn, text))

    # ------------------------------------------------------------ waiting

    async def _hold(self) -> None:
        """The hold audio until someone takes the call (this task is then cancelled) or
        `handoff.max_wait_s` passes: then the caller is told (`handoff.when_missed`)."""
        settings, calls = self._settings.handoff, self._settings.call
        rate = self._format.sample_rate
        message, reminder = await asyncio.gather(
            self._spoken(settings.hold_message), self._spoken(settings.reminder_message)
        )
        audio = HoldAudio(rate, message, reminder, settings.reminder_every_s, settings.hold_volume)
        clock = self._speaker.clock
        playing = self._call.spawn(
            hold.play(
                audio.read,
                self._send_hold,
                rate,
                calls.reply_frame_ms,
                calls.playback_lead_ms,
                clock,
            )
        )
        try:
            await clock.sleep(settings.max_wait_s)
        finally:
            playing.cancel()  # stopped before this task ends: no hold audio after a take
            await asyncio.gather(playing, return_exceptions=True)
        await self._missed()

    async def _spoken(self, text: str) -> np.ndarray:
        """`text` in the voice at the caller's rate, made once per server (`Services.said`)."""
        key = (text, self._format.sample_rate)
        said = self._services.said
        if key not in said:
            said[key] = await self._speaker.spoken(text)
        audio: np.ndarray = said[key]
        return audio

    async def _send_hold(self, frame: np.ndarray) -> None:
        """Hold audio, paused while words are said over it (a supervisor's, a reply)."""
        if not self._call.replying():
            await self._call.send_audio(frame)

    async def _missed(self) -> None:
        """Nobody took the call: the caller is asked to call back, or to leave a message."""
        settings = self._settings.handoff
        self.attendance.change("missed", reason=self.attendance.reason)
        await self._send_attendance()
        log.info("missed handoff: nobody took the call in %g s", settings.max_wait_s)
        if settings.when_missed == "call_back":
            await self._call.speak(Script(settings.missed_message, HOLD), None)
            self._call.hang_up(MISSED_HANDOFF)
            return
        await self._call.speak(Script(settings.message_prompt, HOLD), None)
        await self._tone()
        said = self._message = asyncio.get_running_loop().create_future()
        waited: asyncio.Future[None] = asyncio.ensure_future(
            self._speaker.clock.sleep(settings.message_max_s)
        )
        try:
            await asyncio.wait([said, waited], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waited.cancel()
        if said.done():
            turn, _ = said.result()
            thanks = Script(settings.message_thanks, HOLD, rules=(MESSAGE,))
            await self._call.speak(thanks, turn)
        said.cancel()
        self._call.hang_up(MISSED_HANDOFF)

    async def _tone(self) -> None:
        """The tone after which the caller leaves a message, waited out."""
        rate = self._format.sample_rate
        t = np.arange(round(TONE_S * rate)) / rate
        await self._call.send_audio(float_to_int16(0.3 * np.sin(2 * np.pi * TONE_HZ * t)))
        await self._speaker.clock.sleep(TONE_S)

    # ------------------------------------------------------------ helpers

    async def _send_attendance(self) -> None:
        attendance = self.attendance
        await self._call.send(
            protocol.Hold(
                state=attendance.state,
                name=attendance.name,
                reason=attendance.reason,
                at=attendance.since,
            )
        )

    async def _said(self, text: str) -> None:
        """The person holding the call said `text`: a `person.said` turn, and an exchange in
        the call's memory (what the caller said before it, and this)."""
        self._call.remember(Exchange(" ".join(self._caller_words), text))
        self._caller_words.clear()
        turn = self._call.next_turn()
        await self._call.send(protocol.PersonSaid(turn=turn, name=self.attendance.name, text=text))
