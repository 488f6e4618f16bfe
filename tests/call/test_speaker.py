"""The speaker: first clauses made once, then said again from the server's speech cache; later
clauses asked for in time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest

from tests.support.fakes import BeepVoice, FastClock, RecordingTransport
from tts.cache import SpeechCache
from voice.call.reply import (
    BUSY_MS_PER_CHAR,
    SYNTHESIZE_AHEAD_MS,
    URGENT_LEFT_MS,
    Reply,
    Speaker,
    clause_splitter,
    prepare_first_clauses,
)
from voice.channels.codecs import AudioFormat
from voice.config import CallSettings


def speaker(voice: BeepVoice, cache: SpeechCache) -> Speaker:
    return Speaker(
        voice, AudioFormat("pcm16", 16000), CallSettings(), False, RecordingTransport(), cache=cache
    )


async def test_a_first_clause_said_again_is_not_made_again() -> None:
    voice, cache = BeepVoice(), SpeechCache(1_000_000)
    one, other = speaker(voice, cache), speaker(voice, cache)  # two calls of one server
    first = await one.voice("Bills are due in 21 days.")
    again = await other.voice("Bills are due in 21 days.")
    assert voice.said == ["Bills are due in twenty-one days."]  # made once, as spoken
    assert again.tolist() == first.tolist()
    assert (cache.hits, cache.misses) == (1, 1)


async def test_a_later_clause_is_made_each_time_and_not_kept() -> None:
    voice, cache = BeepVoice(), SpeechCache(1_000_000)
    said = speaker(voice, cache)
    await said.voice("and a fee applies after that.", urgent=False)
    await said.voice("and a fee applies after that.", urgent=False)
    assert len(voice.said) == 2 and len(cache) == 0


async def test_without_a_cache_every_first_clause_is_made() -> None:
    voice = BeepVoice()
    said = Speaker(voice, AudioFormat("pcm16", 16000), CallSettings(), False, RecordingTransport())
    await said.voice("Hello.")
    await said.voice("Hello.")
    assert voice.said == ["Hello.", "Hello."]


async def test_fixed_replies_have_their_first_clause_made_before_anyone_waits() -> None:
    voice, cache, settings = BeepVoice(), SpeechCache(1_000_000), CallSettings()
    handoff = "I don't have that information yet, so I'm transferring you to a colleague."
    await prepare_first_clauses([handoff, "Sorry?", handoff], voice, cache, settings)
    assert voice.said == ["I don't have that information yet,", "Sorry?"]  # each once
    said = speaker(voice, cache)
    await said.voice("I don't have that information yet,")  # the reply's first clause
    assert len(voice.said) == 2 and cache.hits == 1


async def test_no_fixed_reply_is_made_for_a_cache_that_keeps_nothing() -> None:
    voice = BeepVoice()
    await prepare_first_clauses(["Sorry?"], voice, SpeechCache(0), CallSettings())
    assert voice.said == []


def test_a_reply_does_not_begin_with_a_word_said_alone() -> None:
    """The clause after a lone "Yes." would have half a second to be made in."""
    text = "Yes. In the app, go to Shop, then Trade-In, and answer a few questions."
    splitter = clause_splitter(CallSettings())
    assert (splitter.feed_written(text) + splitter.flush())[0] == "Yes. In the app, go to Shop,"
    splitter = clause_splitter(CallSettings())  # written a sentence at a time, as it often is
    sentences = ["Yes.", " In the app, go to Shop, then Trade-In, and answer a few questions."]
    assert [splitter.feed_written(s) for s in sentences] + [splitter.flush()] == [
        [],
        ["Yes. In the app, go to Shop,", "then Trade-In, and answer a few questions."],
        [],
    ]


@dataclass
class Asked:
    text: str
    left_ms: float | None
    """The reply's audio before it that was left to play when it was asked for (None: asked for
    before any played)."""
    urgent: bool
    while_making: int
    """Clauses being made when it was asked for."""


WORD_MS = 300


async def spoken(clauses: list[str]) -> list[Asked]:
    """Each clause as the speaker asks for it in a real-time reply: `WORD_MS` of audio a word,
    made in 0.5 s."""
    voice, clock = BeepVoice(WORD_MS), FastClock(10.0)
    said = Speaker(
        voice, AudioFormat("pcm16", 16000), CallSettings(), True, RecordingTransport(), clock=clock
    )
    reply = Reply(turn=1, question="q", spoken_at=clock.now())
    synthesize, asked, making = voice.synthesize, [], [0]

    async def noting(text: str, *, urgent: bool = True) -> np.ndarray:
        left_ms = None
        if reply.play_start is not None:
            made_ms = sum(len(c.split()) * WORD_MS for c in clauses[: clauses.index(text)])
            left_ms = made_ms - (clock.now() - reply.play_start) * 1000
        asked.append(Asked(text, left_ms, urgent, making[0]))
        making[0] += 1
        await clock.sleep(0.5)
        making[0] -= 1
        return await synthesize(text, urgent=urgent)

    voice.synthesize = noting  # type: ignore[method-assign]
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for clause in [*clauses, None]:
        queue.put_nowait(clause)
    await said.speak(reply, queue)
    assert [a.text for a in asked] == clauses
    return asked


async def test_the_clause_after_the_first_is_asked_for_with_it() -> None:
    """Written already, it waits in line for the synthesizer from the moment the first clause
    does, urgent, instead of behind what other calls ask for while the first is made: it has
    only the first clause's audio to be made in."""
    first, second = await spoken(["You can give the hub,", "plugs and cameras fixed addresses."])
    assert first.urgent and second.urgent
    assert second.left_ms is None and second.while_making == 1


async def test_a_long_clause_after_a_short_one_is_asked_for_in_time() -> None:
    """Later clauses are asked for once `SYNTHESIZE_AHEAD_MS` of audio is left before them,
    a short one included, so the long sentence after it is not asked for late: asked for once
    the short one was made, it would have had 3 s to be made in on a busy server."""
    long = " ".join(["words"] * 30)  # 179 characters
    asked = await spoken([" ".join(["word"] * 30), "Sure.", "Thanks.", long])  # 9 s, 0.3, 0.3
    for clause in asked[2:]:
        assert clause.left_ms == pytest.approx(SYNTHESIZE_AHEAD_MS, abs=400)
        assert not clause.urgent  # time to let other calls' first clauses go first


async def test_a_clause_is_urgent_when_the_audio_before_it_is_shorter_than_its_making() -> None:
    """With 3 s of audio before it, a short clause can still wait out the other calls' first
    clauses; a long one cannot, and is asked for as urgent."""
    before = ["Yes,", " ".join(["word"] * 10)]  # 0.3 s, then 3 s
    long = " ".join(["words"] * 30)
    short_asked, long_asked = (
        (await spoken([*before, "Thanks."]))[2],
        (await spoken([*before, long]))[2],
    )
    assert short_asked.left_ms is not None and long_asked.left_ms is not None
    assert short_asked.left_ms == pytest.approx(long_asked.left_ms, abs=400)  # only length differs
    assert URGENT_LEFT_MS < short_asked.left_ms < URGENT_LEFT_MS + BUSY_MS_PER_CHAR * len(long)
    assert not short_asked.urgent and long_asked.urgent


async def test_a_first_clause_that_fails_takes_the_clause_asked_with_it_along() -> None:
    """The reply fails with the first clause's error, and the clause asked for with it leaves
    the synthesizer's line instead of being made for nobody."""
    voice, cancelled = BeepVoice(), []

    async def failing(text: str, *, urgent: bool = True) -> np.ndarray:
        if text.startswith("First"):
            await asyncio.sleep(0.05)
            raise RuntimeError("the voice failed")
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(text)
            raise
        return await BeepVoice().synthesize(text)

    voice.synthesize = failing  # type: ignore[method-assign]
    said = Speaker(voice, AudioFormat("pcm16", 16000), CallSettings(), True, RecordingTransport())
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for clause in ("First words,", "then the rest.", None):
        queue.put_nowait(clause)
    reply = Reply(turn=1, question="q", spoken_at=0.0)
    with pytest.raises(RuntimeError, match="the voice failed"):
        await asyncio.wait_for(said.speak(reply, queue), 2)
    assert cancelled == ["then the rest."]
