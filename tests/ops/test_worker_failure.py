"""A model's worker process dies in the middle of a call: that call gets an apology and a
handoff, the other calls go on, and the worker is restarted. Real models in real worker
processes, the server on a loopback socket."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from agent.types import AgentSettings
from tests.support.servers import make_services
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient
from voice.ops.server import start_server
from voice.ops.services import Services
from voice.ops.workers import RecognizerWorkers, SynthesizerWorkers, WorkerPool

pytestmark = pytest.mark.models

PCM16 = AudioFormat("pcm16", 16000)
BULB = "My smart bulb keeps flashing red. What should I do?"


@pytest.fixture(scope="module")
def workers():
    from asr.settings import AsrSettings
    from tts.settings import TtsSettings

    recognizer, voice = RecognizerWorkers(AsrSettings()), SynthesizerWorkers(TtsSettings())
    yield recognizer, voice
    recognizer.close()
    voice.close()


@pytest.fixture(scope="module")
async def url(models, workers):
    from agent.selection import build_agent

    agent, _ = build_agent(AgentSettings(backend="extractive"))
    services: Services = make_services(
        models,
        agent,
        # No speculative or partial recognition: the only transcription is the final one.
        turns={"early_asr_ms": 60_000, "early_asr_idle_ms": 60_000, "partial_interval_ms": 0},
    )
    services.transcriber, services.synthesizer = workers
    runner, port = await start_server(services, "127.0.0.1", 0)
    yield f"ws://127.0.0.1:{port}/call"
    await runner.cleanup()


async def until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def kill_mid_request(pool: WorkerPool) -> None:
    """Kill `pool`'s worker while it holds a request: stopped first, so the request it is
    given (or is working on) cannot finish before the kill."""
    pid = pool.pids[0]
    os.kill(pid, signal.SIGSTOP)
    try:
        await until(lambda: pool.in_flight > 0)
    finally:
        os.kill(pid, signal.SIGKILL)


def turns_after(call: CallClient, turn: int) -> list[dict]:
    return [e for e in call.events if e["type"] == "reply.end" and e["turn"] > turn]


async def test_the_voice_dies_mid_reply(url, workers):
    _, voice = workers
    restarts = voice.pool.restarts
    async with (
        CallClient(url, PCM16) as victim,
        CallClient(url, PCM16, realtime_playback=False) as other,
    ):
        await victim.send_text("my smart bulb keeps flashing red, what should I do")
        await victim.wait_for(lambda e: e["type"] == "reply.text", timeout=30)
        await kill_mid_request(voice.pool)
        apology = await victim.wait_for(
            lambda e: e["type"] == "reply.end" and e["backend"] == "apology", timeout=60
        )
        handoff = await victim.wait_for(lambda e: e["type"] == "handoff", timeout=10)
        await other.send_text("how long is the warranty")
        answer = await other.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
    errors = [e["code"] for e in victim.events if e["type"] == "error"]
    assert errors == ["tts_unavailable"]
    first = next(e for e in victim.events if e["type"] == "reply.end")
    assert first["turn"] < apology["turn"] and not first["handoff"]
    assert apology["handoff"] and apology["rules"] == ["server_failure"]
    assert "transferring you" in apology["text"]
    assert handoff["by"] == "assistant"
    assert victim.turns[apology["turn"]].audio, "the apology was spoken by the new worker"
    assert answer["text"] and not answer["handoff"]
    assert voice.pool.restarts == restarts + 1 and voice.pool.alive == 1


async def test_recognition_dies_mid_turn(url, workers, say):
    recognizer, _ = workers
    restarts = recognizer.pool.restarts
    async with (
        CallClient(url, PCM16, realtime_playback=False) as victim,
        CallClient(url, PCM16, realtime_playback=False) as other,
    ):
        speaking = asyncio.create_task(victim.send_audio(say(BULB), realtime=True))
        await victim.wait_for(lambda e: e["type"] == "speech.started", timeout=30)
        await kill_mid_request(recognizer.pool)
        apology = await victim.wait_for(
            lambda e: e["type"] == "reply.end" and e["backend"] == "apology", timeout=60
        )
        await speaking
        answer = await other.ask(say("How long is the warranty?"), realtime=False)
    errors = [e["code"] for e in victim.events if e["type"] == "error"]
    assert errors == ["asr_unavailable"]
    assert apology["handoff"] and "transferring you" in apology["text"]
    assert any(e["type"] == "handoff" for e in victim.events)
    assert "warranty" in answer.transcript.lower() and answer.reply
    assert recognizer.pool.restarts == restarts + 1 and recognizer.pool.alive == 1
