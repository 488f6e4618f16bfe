"""The speaker's first clauses: made once, then said again from the server's speech cache."""

from __future__ import annotations

from tests.support.fakes import BeepVoice, RecordingTransport
from tts.cache import SpeechCache
from voice.call.reply import Speaker, clause_splitter, prepare_first_clauses
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
