"""Pipeline tests: the real server and Piper, with a scripted agent whose timing the test sets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from agent.types import AnswerEvent, AnswerText, Exchange
from tests.support.fakes import FastClock, ScriptedAgent
from voice.call.reply import Reply
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient
from voice.config import CallSettings

PCM16 = AudioFormat("pcm16", 16000)


async def test_a_slow_answer_is_timed_from_the_question(serve):
    agent = ScriptedAgent(first_text_s=0.5)
    async with serve(agent) as url, CallClient(url, PCM16, realtime_playback=False) as call:
        await call.send_text("is my bulb ok")
        end = await call.wait_for(lambda e: e["type"] == "reply.end", timeout=30)
    timings = end["timings_ms"]
    assert timings["asr"] is None
    # From the question (the agent's first text after 0.5 s), then the voice's first clause:
    # a fraction of a second of synthesis, seconds on a loaded machine.
    assert 500 <= timings["first_text"] < timings["first_audio"] < 10_000
    assert end["sources"] == ["troubleshooting#4.2"]


async def test_the_agent_remembers_only_what_the_caller_heard(serve):
    agent = ScriptedAgent(
        reply="First part of a long answer. " + "More words follow here, and more again. " * 8,
        piece_s=0.02,
    )
    clock = FastClock(3.0)  # what was heard is counted in the audio, not in seconds
    async with serve(agent, clock=clock) as url, CallClient(url, PCM16) as call:
        await call.send_text("tell me everything")
        await call.wait_for(lambda e: e["type"] == "reply.text", timeout=30)
        async with asyncio.timeout(30):  # the first clause is made (slower on a loaded box)
            while 1 not in call.turns or call.turns[1].first_audio_at is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await clock.sleep(2.5)  # and plays (about 2 s)
        await call.send_text("stop, what about returns")
        first = await call.wait_for(lambda e: e["type"] == "reply.end", timeout=30)
        await call.wait_for(lambda e: e["type"] == "reply.text" and e["turn"] == 2, timeout=30)
    assert first["turn"] == 1 and first["interrupted"]
    assert [e["type"] for e in call.events].count("clear") == 1
    assert first["heard"].startswith("First part of a long answer.")
    assert len(first["heard"]) < len(first["text"])
    _, memory = agent.asked[1]
    assert [(m.question, m.answer) for m in memory] == [("tell me everything", first["heard"])]


async def test_a_question_typed_before_the_reply_begins_waits_for_it_and_the_newest_wins(serve):
    agent = ScriptedAgent(first_text_s=1.0)  # a slow answer: nothing plays for a second
    async with serve(agent) as url, CallClient(url, PCM16, realtime_playback=False) as call:
        for question in ("first", "second", "third"):
            await call.send_text(question)
        third = await call.wait_for(
            lambda e: e["type"] == "transcript.final" and e["text"] == "third", timeout=30
        )
        await call.wait_for(lambda e: e["type"] == "reply.end" and e["turn"] == third["turn"])
    first_audio = call.turns[1].first_audio_at
    assert first_audio is not None and third["turn"] == 2
    assert [q for q, _ in agent.asked] == ["first", "third"], "the second was never answered"
    assert [e["code"] for e in call.events if e["type"] == "error"] == ["question_dropped"]


class FailingAgent(ScriptedAgent):
    async def answer(
        self, question: str, memory: Sequence[Exchange], *, heard_clearly: bool = True
    ) -> AsyncIterator[AnswerEvent]:
        yield AnswerText("Let me see. ")
        raise RuntimeError("the knowledge base went away")


async def test_a_failing_answer_is_reported_and_said_and_the_call_goes_on(serve):
    sorry = CallSettings().answer_failed_message
    async with serve(FailingAgent()) as url, CallClient(url, PCM16, realtime_playback=False) as c:
        await c.send_text("first")
        await c.wait_for(lambda e: e["type"] == "reply.end" and e["turn"] == 2, timeout=30)
        await c.send_text("second")
        await c.wait_for(lambda e: e["type"] == "reply.end" and e["turn"] == 4, timeout=30)
    errors = [e for e in c.events if e["type"] == "error"]
    assert [(e["code"], e["message"], e["fatal"]) for e in errors] == [
        ("answer_failed", sorry, False)
    ] * 2
    ends = [e for e in c.events if e["type"] == "reply.end"]
    # Each broken answer keeps what was said, then the caller hears why (a phone shows no text).
    assert [e["text"] for e in ends] == ["Let me see.", sorry] * 2
    assert [e["backend"] == "apology" for e in ends] == [False, True] * 2
    assert all(e["audio_ms"] > 1000 for e in ends[1::2]) and not any(e["handoff"] for e in ends)
    # The error comes before its reply's end, as the protocol says.
    first_error = c.events.index(errors[0])
    assert first_error < c.events.index(ends[0])
    assert c.close_code == 1000


@pytest.mark.parametrize(
    ("sent_ms", "heard"),
    [
        (0, ""),
        (500, "Two"),
        (1000, "Two words."),
        (1500, "Two words. Three more"),
        (9000, "Two words. Three more words."),
    ],
)
def test_heard_text_follows_the_audio_sent(sent_ms, heard):
    reply = Reply(turn=1, question="q", spoken_at=0.0)
    reply.clauses = [("Two words.", 0, 1000), ("Three more words.", 1000, 2000)]
    assert reply.heard(sent_ms) == heard


def test_heard_stops_at_what_was_played_not_what_was_sent_ahead():
    reply = Reply(turn=1, question="q", spoken_at=0.0)
    reply.sent_ms = 1300
    reply.play_start, reply.stopped_at = 100.0, 101.0
    assert reply.played_ms(realtime=True, now=105.0) == 1000
    assert reply.played_ms(realtime=False, now=105.0) == 1300
    reply.stopped_at = None  # still playing: as far as the clock has gone
    assert reply.played_ms(realtime=True, now=100.5) == 500
