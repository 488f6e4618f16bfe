"""A call answered through the Ollama path: the real server, faster-whisper and Piper, the Ollama
stand-in; Ollama failing in each way while a caller speaks."""

from __future__ import annotations

import pytest

from agent.ollama import LLM_FALLBACK, LLM_SKIPPED
from agent.selection import breaker_state, build_agent_async
from agent.types import AgentSettings
from tests.support.ollama_standin import OllamaStandIn, Script
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient

PCM16 = AudioFormat("pcm16", 16000)


async def ask_by_phone(serve, ollama_url, question, **settings):
    agent, why = await build_agent_async(
        AgentSettings(backend="auto", ollama_url=ollama_url, **settings)
    )
    async with serve(agent) as url, CallClient(url, PCM16, realtime_playback=False) as call:
        await call.send_text(question)
        end = await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
    texts = [e["text"] for e in call.events if e["type"] == "reply.text"]
    return why, texts, end, call.turns[end["turn"]]


async def test_a_slow_model_is_preceded_by_a_spoken_acknowledgement(serve):
    script = Script(
        reply="A red light means the bulb lost Wi-Fi. Use a 2.4 GHz network. [troubleshooting#4.2]",
        first_chunk_s=4.0,  # after first_token_ack_s (0.8 s), before first_token_timeout_s
    )
    async with OllamaStandIn(script) as ollama:
        why, texts, end, turn = await ask_by_phone(
            serve, ollama.url, "my bulb flashes red", first_token_timeout_s=8.0
        )
    assert why.startswith("ollama")
    assert texts[0].strip() == "Let me check that for you."
    assert "".join(texts[1:]).startswith("A red light means the bulb lost Wi-Fi.")
    assert end["backend"] == "ollama" and end["rules"] == []
    assert end["sources"] == ["troubleshooting#4.2"]
    assert end["timings_ms"]["first_audio"] < 3500  # the acknowledgement, before the model (4 s)
    assert len(turn.audio) / 2 / 16000 > 3


async def test_a_failing_model_still_gets_the_caller_an_answer(serve):
    async with OllamaStandIn(Script(status=503)) as ollama:
        why, texts, end, turn = await ask_by_phone(serve, ollama.url, "my bulb flashes red")
    assert why.startswith("ollama")
    assert "llm_fallback" in end["rules"]
    assert "troubleshooting#4.2" in end["sources"]
    assert "2.4" in end["text"]
    assert turn.audio


SPOKEN = "My smart bulb keeps flashing red."
MODEL_REPLY = "A red light means the bulb lost Wi-Fi. Use a 2.4 GHz network. [troubleshooting#4.2]"
FALLBACK_START = "A Brightnest Smart Bulb that flashes red could not connect to Wi-Fi."
FAULTS = {
    "refused": {},  # the stand-in is closed after the agent chose Ollama
    "hang": {"hang": True},
    "503": {"status": 503},
    "cut before the first sentence": {"cut_after": 3},
}


@pytest.mark.models
@pytest.mark.parametrize("fault", FAULTS)
async def test_a_spoken_question_gets_the_fallback_when_ollama_fails(serve, say, fault):
    async with OllamaStandIn(Script(reply=MODEL_REPLY, **FAULTS[fault])) as ollama:
        agent, why = await build_agent_async(AgentSettings(ollama_url=ollama.url))
        assert why.startswith("ollama")  # auto found Ollama ready at start
        if fault == "refused":
            await ollama.close()
        async with serve(agent) as url, CallClient(url, PCM16, realtime_playback=False) as call:
            turn = await call.ask(say(SPOKEN), realtime=False)
    assert "flash" in turn.transcript.lower()
    assert LLM_FALLBACK in turn.rules
    assert turn.reply.replace("Let me check that for you. ", "").startswith(FALLBACK_START)
    assert turn.sources == ["troubleshooting#4.2"] and not turn.handoff
    assert len(turn.audio) / 2 / 16000 > 5  # the fallback's words were spoken
    # Not after total_timeout_s (20 s); measured tightly in bench/ollama_faults.py.
    assert turn.timings_ms["first_audio"] < 10_000
    assert len(ollama.requests) == (0 if fault == "refused" else 1)


@pytest.mark.models
async def test_after_three_failures_a_caller_is_answered_without_asking_ollama(serve, say):
    async with OllamaStandIn(Script(reply=MODEL_REPLY, status=503)) as ollama:
        agent, _ = await build_agent_async(AgentSettings(ollama_url=ollama.url))
        async with serve(agent) as url, CallClient(url, PCM16, realtime_playback=False) as call:
            turns = [await call.ask(say(SPOKEN), realtime=False) for _ in range(4)]
        state = breaker_state(agent.backend)
    assert [t.rules for t in turns[:3]] == [[LLM_FALLBACK]] * 3
    assert turns[3].rules == [LLM_FALLBACK, LLM_SKIPPED]
    assert turns[3].reply.startswith(FALLBACK_START)
    assert len(ollama.requests) == 3
    assert state is not None and state.open and state.failures_in_a_row == 3
