"""Shared fixtures: the real models loaded once, speech made at test time with the bundled Piper
voice, and servers on real loopback sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.types import Agent
from asr.settings import AsrSettings
from asr.vad import VadModel
from asr.whisper import Transcriber
from tests.support.servers import Models, make_services
from tts.piper import Synthesizer
from tts.settings import TtsSettings
from voice.call.clock import WALL_CLOCK, Clock
from voice.channels.codecs import int16_to_float, resample
from voice.ops.server import start_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that loads the speech models, through `models` or a fixture built on it, is
    marked `models`: `pytest -m "not models"` is the fast lane."""
    for item in items:
        if "models" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.models)


@pytest.fixture(scope="session")
def models() -> Models:
    return Models(Transcriber(AsrSettings()), Synthesizer(TtsSettings()), VadModel())


@pytest.fixture(scope="session")
def say(models: Models) -> Callable[..., np.ndarray]:
    """`say(text, rate=16000, lead_ms=300)`: the bundled voice speaking `text`, float32 mono."""

    @cache
    def speak(text: str, rate: int = 16_000, lead_ms: int = 300) -> np.ndarray:
        voice = models.synthesizer
        audio = int16_to_float(voice.synthesize_blocking(text))
        audio = resample(audio, voice.sample_rate, rate).astype(np.float32)
        lead = np.zeros(rate * lead_ms // 1000, dtype=np.float32)
        return np.concatenate([lead, audio])

    return speak


@pytest.fixture(scope="session")
def serve(models: Models) -> Callable[..., Any]:
    """`async with serve(agent, clock=..., **sections) as url:` a server on a free loopback
    port; `clock` paces its replies (a `FastClock` runs the calls faster than real time)."""
    import contextlib

    @contextlib.asynccontextmanager
    async def running(
        agent: Agent, clock: Clock = WALL_CLOCK, **sections: Any
    ) -> AsyncIterator[str]:
        services = make_services(models, agent, clock, **sections)
        runner, port = await start_server(services, "127.0.0.1", 0)
        try:
            yield f"ws://127.0.0.1:{port}/call"
        finally:
            await runner.cleanup()

    return running


@pytest.fixture(scope="session", autouse=True)
def default_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default data directory (`voice.config.default_data_dir`) of every test and of the
    commands the tests run: a temporary one, never in the home of whoever runs them."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("xdg-data")
        patch.setenv("XDG_DATA_HOME", str(home))
        yield home / "voicedesk"
