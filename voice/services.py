"""Loading the models and the agent once, at start, and saying which were chosen and why."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from agent.types import Agent
from asr.vad import VadModel
from asr.whisper import Transcriber
from tts.piper import Synthesizer
from voice.config import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The loaded models and the agent; one set serves every call."""

    settings: Settings
    transcriber: Transcriber
    synthesizer: Synthesizer
    vad: VadModel
    agent: Agent
    hotwords: str = ""
    """Words to bias recognition toward (the knowledge base's own terms)."""
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    """Work that runs as long as the server does (watching the KB for changes)."""

    def close(self) -> None:
        self.transcriber.close()
        self.synthesizer.close()


def load_services(settings: Settings, agent: Agent | None = None) -> Services:
    """Load ASR, VAD and TTS models and build the agent (or use the one given)."""
    transcriber = Transcriber(settings.asr)
    log.info(
        "speech recognition: %s, %s on %s",
        transcriber.description,
        settings.asr.compute_type,
        settings.asr.device,
    )
    synthesizer = Synthesizer(settings.tts)
    log.info("speech synthesis: %s (%d Hz)", synthesizer.description, synthesizer.sample_rate)
    vad = VadModel()
    log.info("voice activity detection: Silero %s", vad.path.name)
    background: list[Callable[[], Coroutine[Any, Any, None]]] = []
    if agent is None:
        from agent.selection import build_agent

        knowledge, why = build_agent(settings.agent)
        log.info("answers: %s; knowledge base: %s", why, settings.agent.kb_dir or "the demo KB")
        if settings.agent.kb_dir is not None:
            background.append(knowledge.watch_kb)
        background.append(knowledge.watch_backend)
        agent = knowledge
    return Services(
        settings=settings,
        transcriber=transcriber,
        synthesizer=synthesizer,
        vad=vad,
        agent=agent,
        hotwords=agent.vocabulary(),
        background=background,
    )
