"""Loading the models and the agent once, at start, and saying which were chosen and why."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from agent.types import Agent
from asr.vad import VadModel
from asr.whisper import Transcriber
from tts.piper import Synthesizer
from voice.config import Settings
from voice.session import Services

log = logging.getLogger(__name__)


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
        from agent.agent import KnowledgeAgent

        knowledge = KnowledgeAgent.from_settings(settings.agent)
        kb = settings.agent.kb_dir or "the bundled demo KB"
        log.info("answers: extractive from %s (the Ollama backend is not built yet)", kb)
        if settings.agent.kb_dir is not None:
            background.append(knowledge.watch_kb)
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
