"""Servers for tests: the shared models and Services built on them."""

from __future__ import annotations

import dataclasses
import socket
import sys
from dataclasses import dataclass
from typing import Any

from agent.types import Agent
from asr.vad import VadModel
from asr.whisper import Transcriber
from tts.piper import Synthesizer
from voice.call.clock import WALL_CLOCK, Clock
from voice.config import Settings
from voice.ops.services import Services


@dataclass
class Models:
    transcriber: Transcriber
    synthesizer: Synthesizer
    vad: VadModel


def make_services(
    models: Models, agent: Agent, clock: Clock = WALL_CLOCK, **sections: Any
) -> Services:
    """Services on the shared models; `sections` replace fields of settings sections, e.g.
    `call={"send_timeout_s": 1}`; `clock` paces the replies (`FastClock` runs calls faster)."""
    settings = Settings()
    for name, changes in sections.items():
        settings = dataclasses.replace(
            settings, **{name: dataclasses.replace(getattr(settings, name), **changes)}
        )
    return Services(
        settings=settings,
        transcriber=models.transcriber,
        synthesizer=models.synthesizer,
        vad=models.vad,
        agent=agent,
        hotwords=agent.vocabulary(),
        clock=clock,
    )


def free_port() -> int:
    """A loopback port nothing listens on (until someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def voicedesk(*args: str) -> tuple[str, ...]:
    """The command line of `voicedesk ARGS` run from this checkout by this Python."""
    return (sys.executable, "-m", "voice.cli", *args)
