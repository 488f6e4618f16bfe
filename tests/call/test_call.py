"""The voice loop for real: the server on a loopback socket, real faster-whisper, real Piper,
the extractive agent on the demo KB, and questions spoken by the bundled Piper voice."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.types import AgentSettings
from tests.support.fakes import FastClock
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient

pytestmark = pytest.mark.models

PCM16 = AudioFormat("pcm16", 16000)
BULB = "My smart bulb keeps flashing red. What should I do?"
RETURNS = "How many days do I have to return a product?"
WARRANTY = "How long is the warranty?"


@pytest.fixture(scope="session")
def demo_agent():
    from agent.agent import KnowledgeAgent

    return KnowledgeAgent.from_settings(AgentSettings(backend="extractive"))


@pytest.fixture(scope="session")
async def demo_url(serve, demo_agent):
    async with serve(demo_agent) as url:
        yield url


CLOCK = FastClock(3.0)
"""For calls whose replies play out but whose timing is not what the test checks: three times
faster than real time, every position in the audio the same. Speech over a reply (barge-in,
"uh-huh") is timed on the wall clock, as a caller would."""


@pytest.fixture(scope="module")
async def fast_url(serve, demo_agent):
    # The caller's line on the fast clock sends its frames three times as often.
    async with serve(
        demo_agent, clock=CLOCK, call={"max_messages_per_s": 200.0 * CLOCK.speed}
    ) as url:
        yield url


def seconds(turn, audio_format):
    return len(turn.audio) / audio_format.bytes_per_sample / audio_format.sample_rate


async def test_a_full_turn(fast_url, say):
    async with CallClient(fast_url, PCM16, clock=CLOCK) as call:
        turn = await call.ask(say(BULB), realtime=True)
    assert "bulb" in turn.transcript.lower() and "red" in turn.transcript.lower()
    assert "troubleshooting#4.2" in turn.sources
    assert "2.4" in turn.reply
    assert not turn.handoff and not turn.interrupted
    assert turn.heard == turn.reply
    assert seconds(turn, PCM16) > 2.0
    for name in ("asr", "first_text", "first_audio", "perceived"):
        assert turn.timings_ms[name] is not None, name
    assert turn.timings_ms["asr"] <= turn.timings_ms["first_text"] <= turn.timings_ms["first_audio"]
    kinds = [event["type"] for event in call.events]
    for expected in (
        "ready",
        "speech.started",
        "speech.stopped",
        "transcript.final",
        "reply.text",
        "reply.end",
        "end",
    ):
        assert expected in kinds
    assert kinds.index("speech.started") < kinds.index("speech.stopped") < kinds.index("reply.end")
    assert call.close_code == 1000


async def test_two_turns_in_one_call_remember_the_first(demo_url, say, demo_agent):
    async with CallClient(demo_url, PCM16, realtime_playback=False) as call:
        first = await call.ask(say(BULB), realtime=False)
        second = await call.ask(say(RETURNS), realtime=False)
    assert first.turn < second.turn
    assert "troubleshooting#4.2" in first.sources
    assert any(source.startswith(("policy", "faq", "after")) for source in second.sources)
    assert "return" in second.transcript.lower()


async def test_a_long_question_sent_fast_stays_within_the_message_rate(demo_url, say):
    """Ten seconds of speech used to go as 500 unpaced 20 ms frames, over the server's default
    burst (200 a second over 2 s), and the call was closed with 4429 before its reply."""
    question = say(
        "My smart bulb keeps flashing red, and I already switched it off and on again, moved it "
        "closer to the hub and added it in the app once more, but it still keeps flashing red. "
        "What should I do?"
    )
    pad = max(0, 10 * PCM16.sample_rate - len(question))
    question = np.concatenate([question, np.zeros(pad, np.float32)])
    async with CallClient(demo_url, PCM16, realtime_playback=False) as call:
        turn = await call.ask(question, realtime=False)
        assert call.close_code is None
    assert "troubleshooting#4.2" in turn.sources
    assert call.close_code == 1000


async def test_partial_transcripts_arrive_while_the_caller_speaks(demo_url, say):
    long_question = (
        "Hello, I bought a smart bulb last week and since yesterday it keeps flashing red "
        "and I cannot control it from the app anymore. What should I do?"
    )
    async with CallClient(demo_url, PCM16, realtime_playback=False) as call:
        await call.ask(say(long_question), realtime=True)
    kinds = [event["type"] for event in call.events]
    partials = [event for event in call.events if event["type"] == "transcript.partial"]
    assert partials, kinds
    assert kinds.index("transcript.partial") < kinds.index("speech.stopped")


async def test_barge_in_clears_the_reply_and_answers_the_new_question(fast_url, say):
    async with CallClient(fast_url, PCM16, clock=CLOCK) as call:
        await call.send_audio(say(BULB), realtime=True)
        await call.wait_for(lambda e: e["type"] == "reply.text", timeout=30)
        first_turn = call.events[-1]["turn"]
        await CLOCK.sleep(1.5)  # let part of the reply play
        interruption = await call.ask(say(RETURNS), realtime=True)
    clear = [e for e in call.events if e["type"] == "clear"]
    assert clear and clear[0]["turn"] == first_turn
    first = call.turns[first_turn]
    assert first.interrupted
    assert first.heard and len(first.heard) < len(first.reply)
    assert first.reply.startswith(first.heard.rsplit(" ", 1)[0])
    assert "return" in interruption.transcript.lower()
    assert not interruption.interrupted
    kinds = [e["type"] for e in call.events]
    assert kinds.index("clear") < kinds.index("reply.end")


@pytest.mark.parametrize("acknowledgement", ["Uh-huh.", "Mm-hmm.", "Okay."])
async def test_an_acknowledgement_does_not_interrupt(demo_url, say, acknowledgement):
    async with CallClient(demo_url, PCM16) as call:
        await call.send_audio(say(WARRANTY), realtime=True)
        await call.wait_for(lambda e: e["type"] == "reply.text", timeout=30)
        await asyncio.sleep(1.0)
        await call.send_audio(say(acknowledgement), realtime=True)
        end = await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
        await asyncio.sleep(2.0)  # the acknowledgement's own turn, if it made one, ends by now
    assert not end["interrupted"], [e for e in call.events if e["type"] != "reply.text"]
    assert end["heard"] == end["text"]
    assert not [e for e in call.events if e["type"] == "clear"]
    later = [e for e in call.events if e["type"] == "transcript.final" and e["turn"] > end["turn"]]
    assert all(e["ignored"] for e in later), later
    assert [e["type"] for e in call.events].count("reply.end") == 1


async def test_a_cough_does_not_interrupt(demo_url, say):
    rng = np.random.default_rng(7)
    burst = rng.normal(0, 0.3, 16000 * 3 // 10).astype(np.float32)  # 300 ms of broadband noise
    burst *= np.hanning(len(burst)).astype(np.float32)
    async with CallClient(demo_url, PCM16) as call:
        await call.send_audio(say(WARRANTY), realtime=True)
        await call.wait_for(lambda e: e["type"] == "reply.text", timeout=30)
        await asyncio.sleep(1.0)
        await call.send_audio(burst, realtime=True)
        end = await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
    assert not end["interrupted"]
    assert not [e for e in call.events if e["type"] == "clear"]


async def test_a_short_comment_over_the_reply_neither_interrupts_nor_becomes_a_question(
    demo_url, say
):
    async with CallClient(demo_url, PCM16) as call:
        await call.send_audio(say(WARRANTY), realtime=True)
        await call.wait_for(lambda e: e["type"] == "reply.text", timeout=30)
        await asyncio.sleep(0.8)
        await call.send_audio(say("Nice one."), realtime=True)
        end = await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
        await asyncio.sleep(2.0)
    assert not end["interrupted"]
    kinds = [e["type"] for e in call.events]
    assert "clear" not in kinds and kinds.count("reply.end") == 1


async def test_a_typed_question_while_the_caller_speaks_keeps_turns_apart(demo_url, say):
    async with CallClient(demo_url, PCM16, realtime_playback=False) as call:
        speaking = asyncio.create_task(call.send_audio(say(RETURNS), realtime=True))
        await call.wait_for(lambda e: e["type"] == "speech.started", timeout=30)
        await call.send_text("how long is the warranty")
        await speaking
        await call.wait_for(
            lambda e: e["type"] == "reply.end" and "return" in e["text"].lower(), timeout=60
        )
    finals = [e["turn"] for e in call.events if e["type"] == "transcript.final"]
    ends = [e["turn"] for e in call.events if e["type"] == "reply.end"]
    assert sorted(finals) == sorted(set(finals)) and len(finals) == 2
    assert len(ends) == len(set(ends))
    spoken = next(e for e in call.events if e["type"] == "speech.started")["turn"]
    assert spoken in finals
