"""A call session in-process, without the speech models: a loudness VAD, a recognizer that
hears scripted words (told apart by the pitch of their stand-in speech), a voice that beeps each
word and a transport that keeps what was sent (`Call`, `call_in`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from agent.types import Agent
from tests.support.fakes import (
    BeepVoice,
    FastClock,
    LoudnessVad,
    RecordingTransport,
    ScriptedAgent,
    ScriptedRecognizer,
    pitch,
)
from voice.call.session import CallSession
from voice.channels import protocol
from voice.channels.codecs import AudioFormat, float_to_int16
from voice.config import Settings
from voice.ops.services import Services

PCM16 = AudioFormat("pcm16", 16000)
QUESTION = "How long is the warranty?"
WORD_MS = 300
ANSWER = (
    "The warranty lasts two years from the day of purchase. Keep the receipt to claim it, "
    "and bring the product with all its parts to any shop, or send it to us by post."
)


QUESTION_HZ, STOP_HZ, ACKNOWLEDGEMENT_HZ = 220.0, 330.0, 150.0
FIRST_HALF_HZ, SECOND_HALF_HZ = 260.0, 300.0
UNFINISHED_HZ, ITS_END_HZ = 180.0, 200.0
SAID = {
    QUESTION_HZ: QUESTION,
    STOP_HZ: "Wait, stop that.",
    ACKNOWLEDGEMENT_HZ: "Uh-huh.",
    FIRST_HALF_HZ: "I need a new card.",
    SECOND_HALF_HZ: "How long will it take to arrive?",
    UNFINISHED_HZ: "I want to change my",
}


def tones(audio: np.ndarray) -> set[float]:
    """Which of the stand-in voices' pitches sound in `audio`."""
    if not np.any(audio):
        return set()
    spectrum = np.abs(np.fft.rfft(audio))
    level = {hz: spectrum[round(hz * len(audio) / 16_000)] for hz in [*SAID, ITS_END_HZ]}
    return {hz for hz, value in level.items() if value > 0.2 * max(level.values())}


def heard(audio: np.ndarray) -> str:
    """What the callers here say, told apart by the pitches of their stand-in speech."""
    sounding = tones(audio)
    if sounding == {UNFINISHED_HZ, ITS_END_HZ}:
        return "I want to change my address."
    if sounding == {FIRST_HALF_HZ, SECOND_HALF_HZ}:
        return f"{SAID[FIRST_HALF_HZ]} {SAID[SECOND_HALF_HZ]}"
    if len(sounding) != 1:
        return ""
    hz = pitch(audio)
    return next((words for tone, words in SAID.items() if abs(tone - hz) < 15), "")


class Call:
    def __init__(
        self,
        realtime: bool,
        clock: FastClock | None = None,
        recognition_s: float = 0.0,
        agent: Agent | None = None,
        settings: Settings | None = None,
        hears: Callable[[np.ndarray], str] = heard,
        audio: AudioFormat = PCM16,
    ) -> None:
        self.agent = ScriptedAgent(reply=ANSWER)
        self.recognizer = ScriptedRecognizer(hears, recognition_s)
        self.voice = BeepVoice(WORD_MS)
        self.transport = RecordingTransport()
        services = Services(
            settings=settings or Settings(),
            transcriber=self.recognizer,
            synthesizer=self.voice,
            vad=LoudnessVad(),
            agent=agent or self.agent,
        )
        self.clock = clock
        if clock is not None:
            services.clock = clock
        start = protocol.Start(audio=audio, realtime_playback=realtime)
        self.hung_up: list[str] = []
        """The reasons the session ended the call for."""
        self.session = CallSession(services, start, self.transport, hang_up=self.hung_up.append)

    async def say(self, samples: np.ndarray, then_silence_s: float = 1.0) -> None:
        """The caller's audio in 20 ms frames: paced on the call's clock when there is one
        (speech over a reply is heard as it comes), else as fast as the session takes it."""
        audio = np.concatenate([samples, np.zeros(round(then_silence_s * 16_000), np.float32)])
        for offset in range(0, len(audio), 320):
            await self.session.on_audio(PCM16.encode(float_to_int16(audio[offset : offset + 320])))
            if self.clock is not None:
                await self.clock.sleep(0.02)

    async def pause(self, seconds: float) -> None:
        """Silence on the line for `seconds` (a line carries it between words)."""
        await self.say(np.zeros(0, np.float32), then_silence_s=seconds)


@pytest.fixture
async def call_in(request: pytest.FixtureRequest) -> AsyncIterator[type[Call]]:
    calls: list[Call] = []
    tasks: list[asyncio.Task[None]] = []

    def make(*args: object, **kwargs: object) -> Call:
        call = Call(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(call)
        tasks.append(asyncio.create_task(call.session.listen()))
        return call

    yield make  # type: ignore[misc]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for call in calls:
        await call.session.close()
