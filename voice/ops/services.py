"""Loading the models and the agent once, at start, and saying which were chosen and why."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agent.types import Agent
from asr.vad import VadModel
from asr.whisper import Transcriber, Transcript
from tts.cache import SpeechCache
from tts.piper import Synthesizer
from voice.call.clock import WALL_CLOCK, Clock
from voice.config import Settings

log = logging.getLogger(__name__)


class Recognizer(Protocol):
    """Speech recognition as calls use it: `asr.whisper.Transcriber` in this process, or
    `voice.ops.workers.RecognizerWorkers` in worker processes."""

    description: str

    @property
    def busy(self) -> bool:
        """True while every worker is busy (partial transcripts are skipped then)."""
        ...

    @property
    def idle(self) -> bool:
        """True while no transcription is running or waiting."""
        ...

    def supports(self, language: str) -> bool: ...

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        hotwords: str | None = None,
        language: str | None = None,
        urgent: bool = True,
        once: bool = False,
    ) -> Transcript:
        """`urgent=False` (a partial transcript) lets urgent requests waiting go first;
        `once` reads it once, never again when in doubt
        (`asr.whisper.Transcriber.transcribe_blocking`)."""
        ...

    def close(self) -> None: ...


class Voice(Protocol):
    """Speech synthesis as calls use it: `tts.piper.Synthesizer` or
    `voice.ops.workers.SynthesizerWorkers`."""

    description: str
    sample_rate: int

    async def synthesize(self, text: str, *, urgent: bool = True) -> np.ndarray:
        """`urgent=False` (a clause after the first of a reply) lets urgent ones go first."""
        ...

    def close(self) -> None: ...


class Hearing(Protocol):
    """One call's voice-activity detection: `asr.vad.VadStream`."""

    async def hear(self, audio: np.ndarray) -> list[float]:
        """Speech probabilities (0..1), one per whole `asr.vad.WINDOW` of 16 kHz audio."""
        ...


class VoiceActivity(Protocol):
    """Voice-activity detection as calls use it: `asr.vad.VadModel`."""

    def stream(self) -> Hearing: ...

    def close(self) -> None: ...


@dataclass
class Services:
    """The loaded models and the agent; one set serves every call."""

    settings: Settings
    transcriber: Recognizer
    synthesizer: Voice
    vad: VoiceActivity
    agent: Agent
    hotwords: str = ""
    """Words to bias recognition toward (the knowledge base's own terms)."""
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    """Work that runs as long as the server does (watching the KB for changes)."""
    clock: Clock = WALL_CLOCK
    """What replies are paced on (a test may run its calls faster than real time)."""
    speech: SpeechCache = field(default_factory=lambda: SpeechCache(0))
    """Replies' first clauses said before, kept to be said again at once (`tts.cache_mb`)."""
    said: dict[tuple[str, int], Any] = field(default_factory=dict)
    """Fixed sentences said outside replies (the hold message), once made: (text, rate) → int16
    audio. The same for every call, so the voice makes each once per server and rate."""

    def close(self) -> None:
        self.transcriber.close()
        self.synthesizer.close()
        self.vad.close()


def load_services(settings: Settings, agent: Agent | None = None) -> Services:
    """Load ASR, VAD and TTS models and build the agent (or use the one given).

    On a failure, the models already loaded are closed again (their worker processes ended)
    before the exception goes on."""
    transcriber: Recognizer
    synthesizer: Voice
    with contextlib.ExitStack() as loaded:
        if settings.server.isolate_models:
            from voice.ops.workers import RecognizerWorkers, SynthesizerWorkers

            transcriber = RecognizerWorkers(settings.asr)
            loaded.callback(transcriber.close)
            synthesizer = SynthesizerWorkers(settings.tts, quiet=lambda: transcriber.idle)
        else:
            transcriber = Transcriber(settings.asr)
            loaded.callback(transcriber.close)
            synthesizer = Synthesizer(settings.tts, quiet=lambda: transcriber.idle)
        loaded.callback(synthesizer.close)
        log.info(
            "speech recognition: %s, %s on %s%s",
            transcriber.description,
            settings.asr.compute_type,
            settings.asr.device,
            ", in worker processes" if settings.server.isolate_models else "",
        )
        log.info("speech synthesis: %s (%d Hz)", synthesizer.description, synthesizer.sample_rate)
        vad = VadModel()
        loaded.callback(vad.close)
        log.info("voice activity detection: Silero %s", vad.path.name)
        background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        if agent is None:
            from agent.selection import build_agent

            knowledge, why = build_agent(settings.answering())
            log.info("answers: %s; knowledge base: %s", why, settings.agent.kb_dir or "the demo KB")
            if settings.agent.kb_dir is not None:
                background.append(knowledge.watch_kb)
            background.append(knowledge.watch_backend)
            agent = knowledge
        loaded.pop_all()  # loaded: from here on the caller closes them, with `Services.close`
    return Services(
        settings=settings,
        transcriber=transcriber,
        synthesizer=synthesizer,
        vad=vad,
        agent=agent,
        hotwords=agent.vocabulary(),
        background=background,
        speech=SpeechCache(round(settings.tts.cache_mb * 1_000_000)),
    )
