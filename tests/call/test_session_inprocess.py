"""A call session in-process, without the speech models: a loudness VAD, a recognizer that
hears scripted words, a voice that beeps each word and a transport that keeps what was sent.
The whole path of a call — turns, recognition, the answer, speech, barge-in — in milliseconds;
the same paths run against the real models in tests/call/test_call.py."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from agent.selection import breaker_state, build_agent_async
from agent.types import AgentSettings
from tests.support.fakes import (
    FastClock,
    speech,
)
from tests.support.inprocess import (
    ACKNOWLEDGEMENT_HZ,
    ANSWER,
    FIRST_HALF_HZ,
    ITS_END_HZ,
    QUESTION,
    SAID,
    SECOND_HALF_HZ,
    STOP_HZ,
    UNFINISHED_HZ,
    WORD_MS,
    heard,
)
from tests.support.ollama_standin import OllamaStandIn
from tests.support.ollama_standin import Script as ModelScript
from voice.channels import protocol
from voice.config import Settings


async def test_a_spoken_question_is_heard_answered_and_spoken(call_in):
    call = call_in(realtime=False)
    await call.say(speech(1.6))
    end = await call.transport.wait_for(protocol.ReplyEnd)
    kinds = [event.type for event in call.transport.events]
    assert kinds.index("speech.started") < kinds.index("speech.stopped")
    assert kinds.index("transcript.final") < kinds.index("reply.text") < kinds.index("reply.end")
    final = call.transport.of(protocol.FinalTranscript)[0]
    assert final.text == QUESTION and not final.ignored
    assert call.agent.asked[0][0] == QUESTION
    assert end.text == ANSWER and end.heard == end.text and not end.interrupted
    # Every word was spoken, once, in the caller's format.
    assert " ".join(call.voice.said).split() == ANSWER.split()
    assert len(call.transport.audio) // 2 == len(ANSWER.split()) * WORD_MS * 16
    assert end.audio_ms == len(ANSWER.split()) * WORD_MS


async def test_words_over_a_playing_reply_stop_it_where_the_caller_stopped_hearing(call_in):
    clock = FastClock(5.0)
    call = call_in(realtime=True, clock=clock)
    await call.say(speech(1.6))
    await call.transport.wait_for(protocol.ReplyText)
    await call.pause(2.0)  # the reply plays for a while
    await call.say(speech(1.2, STOP_HZ), then_silence_s=1.0)
    clear = await call.transport.wait_for(protocol.Clear)
    first = await call.transport.wait_for(protocol.ReplyEnd, lambda e: e.turn == clear.turn)
    assert first.interrupted and 0 < len(first.heard) < len(first.text)
    assert first.text.startswith(first.heard)
    # The stop became the next question, answered in full.
    second = await call.transport.wait_for(protocol.ReplyEnd, lambda e: e.turn > first.turn)
    assert call.agent.asked[1][0] == "Wait, stop that." and not second.interrupted
    _, memory = call.agent.asked[1]
    assert memory[0].answer == first.heard  # the agent remembers only what was heard


async def test_an_acknowledgement_over_a_reply_is_no_question_and_stops_nothing(call_in):
    clock = FastClock(5.0)
    call = call_in(realtime=True, clock=clock)
    await call.say(speech(1.6))
    await call.transport.wait_for(protocol.ReplyText)
    await call.pause(1.5)
    await call.say(speech(0.4, ACKNOWLEDGEMENT_HZ), then_silence_s=1.0)
    ignored = await call.transport.wait_for(protocol.FinalTranscript, lambda e: e.ignored)
    end = await call.transport.wait_for(protocol.ReplyEnd)
    assert end.turn < ignored.turn
    assert not end.interrupted and end.heard == end.text
    assert not call.transport.of(protocol.Clear) and len(call.agent.asked) == 1


async def test_a_typed_question_takes_the_place_of_a_playing_reply(call_in):
    clock = FastClock(5.0)
    call = call_in(realtime=True, clock=clock)
    await call.session.on_text("tell me about the warranty")
    await call.transport.wait_for(protocol.ReplyText)
    await clock.sleep(1.5)
    await call.session.on_text("and returns?")
    first = await call.transport.wait_for(protocol.ReplyEnd)
    second = await call.transport.wait_for(protocol.ReplyEnd, lambda e: e.turn > first.turn)
    assert first.interrupted and not second.interrupted
    assert [question for question, _ in call.agent.asked] == [
        "tell me about the warranty",
        "and returns?",
    ]
    assert call.recognizer.requests == []  # typed: nothing to recognize


async def test_a_pause_after_unfinished_words_does_not_end_the_turn(call_in):
    call = call_in(realtime=True, clock=FastClock(5.0))  # the words are in as the pause goes on
    await call.say(speech(1.0, UNFINISHED_HZ), then_silence_s=0.8)  # "… change my" — a pause
    await call.say(speech(0.6, ITS_END_HZ))  # "address."
    end = await call.transport.wait_for(protocol.ReplyEnd)
    # The answer begun in the pause was thrown away when the caller went on.
    asked = [question for question, _ in call.agent.asked]
    assert asked == ["I want to change my", "I want to change my address."]
    assert len(call.transport.of(protocol.SpeechStopped)) == 1 and not end.interrupted
    assert "".join(text.text for text in call.transport.of(protocol.ReplyText)) == ANSWER + " "


async def test_a_doubted_last_word_that_leads_on_ends_the_turn_after_the_default_window(call_in):
    call = call_in(realtime=True, clock=FastClock(5.0))
    call.recognizer.doubted = True  # "… change my" may be a mishearing of a whole question
    await call.say(speech(1.0, UNFINISHED_HZ), then_silence_s=0.9)  # under the long window
    stopped = await call.transport.wait_for(protocol.SpeechStopped)
    assert stopped.at_ms <= 1000 + 900


async def test_going_on_just_after_the_turn_ended_is_one_question_answered_once(call_in):
    clock = FastClock(5.0)
    call = call_in(realtime=True, clock=clock)
    # The turn ends in the pause: after 300 ms of it once the words are in, or after 700 ms
    # on a machine too busy to have them by then; either way the caller goes on well within
    # the 1 s a continuation has.
    await call.say(speech(1.2, FIRST_HALF_HZ), then_silence_s=0.9)
    await call.say(speech(1.4, SECOND_HALF_HZ))
    whole = "I need a new card. How long will it take to arrive?"
    answered = await call.transport.wait_for(protocol.ReplyEnd, lambda e: not e.interrupted)
    cut = call.transport.of(protocol.ReplyEnd)[0]
    assert cut.continued and cut.interrupted and cut.turn < answered.turn
    assert [clear.turn for clear in call.transport.of(protocol.Clear)] == [cut.turn]
    asked = [question for question, _ in call.agent.asked]
    assert asked == ["I need a new card.", whole]
    assert call.agent.asked[1][1] == []  # the cut reply is no part of what was said before
    assert not answered.continued and answered.heard == answered.text


async def test_pressing_to_talk_again_later_is_a_new_question_not_a_continuation(call_in):
    clock = FastClock(5.0)
    call = call_in(realtime=True, clock=clock)
    await call.say(speech(1.2, FIRST_HALF_HZ), then_silence_s=0.4)
    await call.transport.wait_for(protocol.ReplyText)
    await clock.sleep(1.5)  # push-to-talk: nothing on the line between presses
    await call.say(speech(1.4, SECOND_HALF_HZ))
    second = await call.transport.wait_for(protocol.ReplyEnd, lambda e: e.turn > 1)
    first = call.transport.of(protocol.ReplyEnd)[0]
    assert first.interrupted and not first.continued  # a barge-in
    assert [q for q, _ in call.agent.asked] == [
        "I need a new card.",
        "How long will it take to arrive?",
    ]
    assert not second.interrupted


async def test_going_on_before_the_answer_began_is_one_question_too(call_in):
    clock = FastClock(5.0)
    call = call_in(realtime=True, clock=clock, recognition_s=0.5)  # slow: no reply yet
    await call.say(speech(1.2, FIRST_HALF_HZ), then_silence_s=0.8)  # the turn ends in the pause
    await call.say(speech(1.4, SECOND_HALF_HZ))
    end = await call.transport.wait_for(protocol.ReplyEnd)
    whole = "I need a new card. How long will it take to arrive?"
    assert [q for q, _ in call.agent.asked] == [whole]
    assert not end.interrupted and len(call.transport.of(protocol.ReplyEnd)) == 1
    finals = [final.text for final in call.transport.of(protocol.FinalTranscript)]
    assert finals == ["I need a new card.", whole]


WHOLE = f"{SAID[FIRST_HALF_HZ]} {SAID[SECOND_HALF_HZ]}"
PAUSE_IN_WORDS = Settings(
    turns=dataclasses.replace(Settings().turns, early_asr_ms=100, complete_silence_ms=450)
)
"""The words of a pause are in after 100 ms; a complete question ends the turn at 450 ms: a
caller who goes on after 250 ms does so after its answer was begun, before the turn ended."""


async def test_the_answer_and_its_first_words_are_made_in_the_pause_before_the_turn_ends(call_in):
    call = call_in(realtime=True, clock=FastClock(5.0))
    sent_when_spoken: list[list[str]] = []
    synthesize = call.voice.synthesize

    async def noting(text: str, *, urgent: bool = True) -> np.ndarray:
        sent_when_spoken.append([event.type for event in call.transport.events])
        return await synthesize(text, urgent=urgent)

    call.voice.synthesize = noting
    await call.say(speech(1.6))
    end = await call.transport.wait_for(protocol.ReplyEnd)
    assert "speech.started" in sent_when_spoken[0]
    assert "speech.stopped" not in sent_when_spoken[0]  # spoken ahead, in the pause
    assert [q for q, _ in call.agent.asked] == [QUESTION]  # answered once
    assert end.text == ANSWER and not end.interrupted
    assert " ".join(call.voice.said).split() == ANSWER.split()  # each clause made once
    assert end.ahead and end.timings_ms.first_audio is not None


async def test_the_pause_is_transcribed_sooner_while_recognition_is_idle(call_in):
    """`turns.early_asr_idle_ms` (50) instead of `early_asr_ms` (100): two VAD windows of
    silence instead of four before the speculative transcription starts."""
    lengths = []
    for idle in (False, True):
        call = call_in(realtime=False)
        call.recognizer.idle = idle
        await call.say(speech(1.6))
        await call.transport.wait_for(protocol.ReplyEnd)
        lengths.append(call.recognizer.requests[0][0])
    busy, idle_s = lengths
    assert busy - idle_s == pytest.approx(0.064)


async def test_partial_transcripts_are_read_once_and_the_question_thoroughly(call_in):
    """A partial is never read again when in doubt (`once`): the final transcript replaces
    it. The question's own transcript still is."""
    call = call_in(realtime=True, clock=FastClock(5.0))
    await call.say(speech(2.6))
    await call.transport.wait_for(protocol.ReplyEnd)
    partial = [once for _, urgent, once in call.recognizer.requests if not urgent]
    whole = [once for _, urgent, once in call.recognizer.requests if urgent]
    assert partial and all(partial)
    assert whole and not any(whole)
    assert call.transport.of(protocol.PartialTranscript)


async def test_a_short_first_clause_is_heard_sooner_and_the_next_is_made_urgently(call_in):
    """The reply's first sentence is cut where a phrase begins (`call.first_clause_chars`): the
    caller waits for the synthesis of its first words only. The clause after it is asked for
    as urgent, as the first is: the little audio before it cannot wait out the workers'
    patience, nor can the long third clause's synthesis. The short last one, with seconds of
    audio before it, lets other calls go first."""
    call = call_in(realtime=True, clock=FastClock(2.0))
    asked: list[tuple[str, bool]] = []
    synthesize = call.voice.synthesize

    async def noting(text: str, *, urgent: bool = True) -> np.ndarray:
        asked.append((text, urgent))
        return await synthesize(text, urgent=urgent)

    call.voice.synthesize = noting
    await call.say(speech(1.6))
    end = await call.transport.wait_for(protocol.ReplyEnd)
    assert end.text == ANSWER and not end.interrupted
    assert asked == [
        ("The warranty lasts two years", True),
        ("from the day of purchase.", True),
        (
            "Keep the receipt to claim it, and bring the product with all its parts to any shop,",
            True,
        ),
        ("or send it to us by post.", False),
    ]


async def test_an_answer_begun_in_a_pause_is_thrown_away_when_the_caller_goes_on(call_in):
    call = call_in(realtime=True, clock=FastClock(5.0), settings=PAUSE_IN_WORDS)
    await call.say(speech(1.2, FIRST_HALF_HZ), then_silence_s=0.25)
    await call.say(speech(1.4, SECOND_HALF_HZ))
    end = await call.transport.wait_for(protocol.ReplyEnd)
    assert [q for q, _ in call.agent.asked] == ["I need a new card.", WHOLE]
    assert [final.text for final in call.transport.of(protocol.FinalTranscript)] == [WHOLE]
    assert len(call.transport.of(protocol.SpeechStopped)) == 1
    assert not end.interrupted and not end.continued and end.text == ANSWER
    assert len(call.transport.of(protocol.ReplyEnd)) == 1 and end.ahead  # in the last pause


def heard_about_the_bulb(audio: np.ndarray) -> str:
    """The two halves are a question the demo KB answers, and its first half is one too."""
    said = heard(audio)
    return {
        SAID[FIRST_HALF_HZ]: BULB,
        WHOLE: f"{BULB} What should I do?",
    }.get(said, said)


BULB = "My smart bulb keeps flashing red."


async def test_a_language_model_asked_ahead_is_stopped_cleanly_when_the_caller_goes_on(call_in):
    reply = "A red light means the bulb lost Wi-Fi. Use a 2.4 GHz network. [troubleshooting#4.2]"
    script = ModelScript(reply=reply, first_chunk_s=0.05, chunk_s=0.05)
    async with OllamaStandIn(script) as ollama:
        agent, _ = await build_agent_async(
            AgentSettings(backend="ollama", ollama_url=ollama.url, first_token_ack_s=30.0)
        )
        call = call_in(
            realtime=True,
            clock=FastClock(5.0),
            agent=agent,
            settings=PAUSE_IN_WORDS,
            hears=heard_about_the_bulb,
        )
        await call.say(speech(1.2, FIRST_HALF_HZ), then_silence_s=0.25)
        await asyncio.wait_for(ollama.asked.wait(), 10)  # the line waits (push-to-talk)
        await call.say(speech(1.4, SECOND_HALF_HZ))
        end = await call.transport.wait_for(protocol.ReplyEnd)
    asked = [request["messages"][-1]["content"] for request in ollama.requests]
    assert len(asked) == 2 and BULB in asked[0] and "What should I do?" not in asked[0]
    assert f"{BULB} What should I do?" in asked[1]
    assert ollama.gone == 1  # the first request was closed mid-answer
    assert end.backend == "ollama" and "llm_fallback" not in end.rules
    assert end.text.startswith("A red light means the bulb lost Wi-Fi.")
    state = breaker_state(agent.backend)
    assert state is not None and state.failures_in_a_row == 0  # thrown away is no failure
