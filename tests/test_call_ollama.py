"""A call answered through the Ollama path: the real server and Piper, the Ollama stand-in."""

from __future__ import annotations

from agent.selection import build_agent_async
from agent.types import AgentSettings
from tests.ollama_standin import OllamaStandIn, Script
from voice.client import CallClient
from voice.codecs import AudioFormat

PCM16 = AudioFormat("pcm16", 16000)


async def ask_by_phone(serve, ollama_url, question):
    agent, why = await build_agent_async(AgentSettings(backend="auto", ollama_url=ollama_url))
    async with serve(agent) as url, CallClient(url, PCM16, realtime_playback=False) as call:
        await call.send_text(question)
        end = await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
    texts = [e["text"] for e in call.events if e["type"] == "reply.text"]
    return why, texts, end, call.turns[end["turn"]]


async def test_a_slow_model_is_preceded_by_a_spoken_acknowledgement(serve):
    script = Script(
        reply="A red light means the bulb lost Wi-Fi. Use a 2.4 GHz network. [troubleshooting#4.2]",
        first_chunk_s=2.5,
    )
    async with OllamaStandIn(script) as ollama:
        why, texts, end, turn = await ask_by_phone(serve, ollama.url, "my bulb flashes red")
    assert why.startswith("ollama")
    assert texts[0].strip() == "Let me check that for you."
    assert "2.4" in "".join(texts[1:])
    assert end["sources"] == ["troubleshooting#4.2"]
    assert end["timings_ms"]["first_audio"] < 2000  # the acknowledgement, before the model
    assert len(turn.audio) / 2 / 16000 > 3


async def test_a_failing_model_still_gets_the_caller_an_answer(serve):
    async with OllamaStandIn(Script(status=503)) as ollama:
        why, texts, end, turn = await ask_by_phone(serve, ollama.url, "my bulb flashes red")
    assert why.startswith("ollama")
    assert "llm_fallback" in end["rules"]
    assert "troubleshooting#4.2" in end["sources"]
    assert "2.4" in end["text"]
    assert turn.audio
