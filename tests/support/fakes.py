"""Scripted stand-ins for the slow parts, for timing-controlled pipeline tests, and for a call
session run in-process without the speech models (`LoudnessVad`, `ScriptedRecognizer`,
`BeepVoice`, `RecordingTransport`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from agent.types import AnswerEnd, AnswerEvent, AnswerText, Exchange
from asr.vad import WINDOW
from asr.whisper import Transcript
from voice.channels import protocol
from voice.channels.codecs import float_to_int16

E = TypeVar("E")


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


# ---------------------------------------------------------------- a call without the models

SPEECH_RMS = 0.02
"""What `LoudnessVad` takes for speech: any 32 ms window louder than this."""


def speech(seconds: float, pitch_hz: float = 220.0, rate: int = 16_000) -> np.ndarray:
    """A steady tone standing in for speech (float32): what `LoudnessVad` hears as voiced; a
    `ScriptedRecognizer` can tell utterances apart by their `pitch`."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * pitch_hz * t)).astype(np.float32)


def pitch(audio: np.ndarray, rate: int = 16_000) -> float:
    """The strongest frequency in `audio`, in Hz (0 for silence)."""
    if not np.any(audio):
        return 0.0
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.argmax(spectrum) * rate / len(audio))


class LoudnessVad:
    """A `voice.ops.services.VoiceActivity` that takes every loud window for speech."""

    def stream(self) -> _LoudnessStream:
        return _LoudnessStream()

    def close(self) -> None:
        pass


class _LoudnessStream:
    def __init__(self) -> None:
        self._pending = np.zeros(0, np.float32)

    async def hear(self, audio: np.ndarray) -> list[float]:
        samples = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        whole = len(samples) // WINDOW * WINDOW
        self._pending = samples[whole:]
        windows = samples[:whole].reshape(-1, WINDOW)
        loud = np.sqrt(np.mean(windows**2, axis=1)) > SPEECH_RMS
        return [1.0 if voiced else 0.0 for voiced in loud]


class ScriptedRecognizer:
    """A `voice.ops.services.Recognizer` that hears `words(audio)`: a test says which words
    its stand-in speech holds (by its `pitch`, say). Records every request."""

    description = "scripted"

    def __init__(self, words: Callable[[np.ndarray], str], delay_s: float = 0.0) -> None:
        self._words = words
        self._delay_s = delay_s
        self.requests: list[tuple[float, bool, bool]] = []
        """(seconds of audio, urgent, once) per request."""

    @property
    def busy(self) -> bool:
        return False

    idle = False
    """Never idle unless a test says so: the pause comes after `early_asr_ms`."""
    doubted = False
    """Whether its transcripts are doubted (`Transcript.reliable` False)."""

    def supports(self, language: str) -> bool:
        return True

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        hotwords: str | None = None,
        language: str | None = None,
        urgent: bool = True,
        once: bool = False,
    ) -> Transcript:
        seconds = len(audio) / 16_000
        self.requests.append((seconds, urgent, once))
        await asyncio.sleep(self._delay_s)
        return Transcript(self._words(audio), "en", seconds, reliable=not self.doubted)

    def close(self) -> None:
        pass


class BeepVoice:
    """A `voice.ops.services.Voice` that says every word as `word_ms` of tone, at once."""

    description = "beeps"
    sample_rate = 16_000

    def __init__(self, word_ms: int = 300) -> None:
        self._word_ms = word_ms
        self.said: list[str] = []

    async def synthesize(self, text: str, *, urgent: bool = True) -> np.ndarray:
        self.said.append(text)
        seconds = len(text.split()) * self._word_ms / 1000
        return float_to_int16(speech(seconds, 440.0, self.sample_rate))

    def close(self) -> None:
        pass


class RecordingTransport:
    """A `voice.call.transport.Transport` that keeps what the session sent: a wire whose
    caller reports no playback (the session estimates it, as on the caller protocol)."""

    def __init__(self) -> None:
        self.events: list[protocol.Event] = []
        self.audio = bytearray()
        self.changed = asyncio.Event()

    async def send_event(self, event: protocol.Event) -> None:
        self.events.append(event)
        self.changed.set()

    async def send_audio(self, data: bytes) -> None:
        self.audio.extend(data)

    async def mark(self, turn: int, position_ms: int) -> None:
        pass

    def played_ms(self, turn: int) -> int | None:
        return None

    async def played(self, turn: int, position_ms: int) -> None:
        pass

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]

    async def wait_for(self, kind: type[E], match: Callable[[E], bool] = lambda e: True) -> E:
        """The first event of `kind` that `match`es, waiting for it (10 s at most)."""
        async with asyncio.timeout(10):
            while True:
                for event in self.of(kind):
                    if match(event):
                        return event
                self.changed.clear()
                await self.changed.wait()
