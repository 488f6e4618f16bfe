"""Turn detection from literal VAD probabilities: no model, no socket."""

import numpy as np
import pytest

from asr.vad import WINDOW, WINDOW_MS
from voice.call.turns import (
    TurnDetector,
    TurnEnded,
    TurnPaused,
    TurnResumed,
    TurnStarted,
    interrupts,
    read_words,
)
from voice.config import TurnSettings

SETTINGS = TurnSettings(min_speech_ms=96, silence_ms=320, early_asr_ms=160, preroll_ms=64)


def feed(detector, probabilities, value=0.1):
    events = []
    for p in probabilities:
        events += detector.push(np.full(WINDOW, value, np.float32), [p])
    return events


def test_speech_then_silence_is_one_turn():
    detector = TurnDetector(SETTINGS)
    events = feed(detector, [0.0] * 5 + [0.9] * 10 + [0.0] * 10)
    kinds = [type(e) for e in events]
    assert kinds == [TurnStarted, TurnPaused, TurnEnded]
    started, ended = events[0], events[-1]
    assert started.at_ms == 5 * WINDOW_MS
    assert ended.last_voice_ms == 15 * WINDOW_MS
    assert ended.at_ms == ended.last_voice_ms + SETTINGS.silence_ms
    # speech (10 windows) + silence window + pre-roll (2 windows)
    assert len(ended.audio) == (10 + 10 + 2) * WINDOW
    assert ended.reason == "silence"
    assert not detector.in_speech


def test_a_click_shorter_than_min_speech_starts_nothing():
    detector = TurnDetector(SETTINGS)
    assert feed(detector, [0.9, 0.9, 0.0, 0.0, 0.9, 0.0] * 5) == []


def test_a_pause_shorter_than_the_silence_window_keeps_the_turn():
    detector = TurnDetector(SETTINGS)
    events = feed(detector, [0.9] * 5 + [0.0] * 6 + [0.9] * 5 + [0.0] * 10)
    assert [type(e) for e in events] == [
        TurnStarted,
        TurnPaused,
        TurnResumed,
        TurnPaused,
        TurnEnded,
    ]


def test_probabilities_between_the_thresholds_neither_start_nor_end_silence():
    detector = TurnDetector(SETTINGS)
    events = feed(detector, [0.9] * 5 + [0.4] * 30)
    assert [type(e) for e in events] == [TurnStarted]
    assert detector.in_speech


def test_max_utterance_ends_the_turn():
    detector = TurnDetector(TurnSettings(min_speech_ms=32, max_utterance_ms=640))
    events = feed(detector, [0.9] * 40)
    ended = [e for e in events if isinstance(e, TurnEnded)]
    assert ended and ended[0].reason == "max_length"
    assert ended[0].at_ms - events[0].at_ms == 640


def test_idle_buffer_stays_bounded():
    detector = TurnDetector(SETTINGS)
    feed(detector, [0.0] * 2000)
    assert len(detector._audio) < 10 * WINDOW


def test_audio_chunks_need_not_align_with_windows():
    detector = TurnDetector(SETTINGS)
    ramp = np.arange(WINDOW * 20, dtype=np.float32)
    probabilities = [0.0] * 4 + [0.9] * 8 + [0.0] * 8
    detector.push(ramp[:700], probabilities[:1])
    detector.push(ramp[700:], probabilities[1:])
    assert detector.position_ms == 20 * WINDOW_MS


@pytest.mark.parametrize(
    "text", ["Uh-huh.", "mm-hmm", "Okay.", "yeah okay", "", " . ", "Thank you.", "Emm... hmmm"]
)
@pytest.mark.parametrize("speech_ms", [300, 2500])
def test_acknowledgements_never_interrupt(text, speech_ms):
    assert not interrupts(text, speech_ms, min_words_ms=1000)


@pytest.mark.parametrize("text", ["Wait, what about the camera?", "stop", "no I meant the plug"])
def test_interrupting_words_interrupt_even_short_speech(text):
    assert interrupts(text, 400, min_words_ms=1000)


def test_other_words_interrupt_only_past_the_words_threshold():
    assert not interrupts("and then, mom", 700, min_words_ms=1000)  # a misheard "mm-hmm"
    assert interrupts("the camera is broken too", 1200, min_words_ms=1000)


# ---------------------------------------------------------------- the end that reads the words

READING = TurnSettings(
    min_speech_ms=96,
    silence_ms=640,
    complete_silence_ms=288,
    unfinished_silence_ms=1024,
    early_asr_ms=160,
    preroll_ms=64,
)


def paused(detector: TurnDetector) -> None:
    """Speech, then silence up to the pause (where the speculative transcript starts)."""
    events = feed(detector, [0.9] * 10 + [0.0] * (READING.early_asr_ms // WINDOW_MS))
    assert [type(e) for e in events] == [TurnStarted, TurnPaused]


def silence_until_the_end(detector: TurnDetector) -> int:
    """Feed silence until the turn ends; the silence it took, in ms."""
    for windows in range(1, 100):
        if any(isinstance(e, TurnEnded) for e in feed(detector, [0.0])):
            return READING.early_asr_ms + windows * WINDOW_MS
    raise AssertionError("the turn never ended")


def test_a_complete_question_ends_the_turn_after_a_short_silence():
    detector = TurnDetector(READING)
    paused(detector)
    assert detector.judge("complete") is None  # 160 ms of silence so far
    assert silence_until_the_end(detector) == READING.complete_silence_ms


def test_words_heard_late_end_a_turn_already_silent_long_enough_at_once():
    detector = TurnDetector(READING)
    paused(detector)
    feed(detector, [0.0] * 5)  # 320 ms of silence in all: the transcript took its time
    ended = detector.judge("complete")
    assert isinstance(ended, TurnEnded) and ended.reason == "silence"
    assert not detector.in_speech


def test_an_unfinished_question_waits_longer_than_the_default():
    detector = TurnDetector(READING)
    paused(detector)
    assert detector.judge("unfinished") is None
    assert silence_until_the_end(detector) == READING.unfinished_silence_ms


def test_without_words_the_default_window_ends_the_turn():
    detector = TurnDetector(READING)
    paused(detector)
    assert silence_until_the_end(detector) == READING.silence_ms


def test_words_with_no_end_mark_end_the_turn_after_the_default_window():
    detector = TurnDetector(READING)
    paused(detector)
    assert detector.judge("unmarked") is None
    assert silence_until_the_end(detector) == READING.silence_ms


def test_speaking_again_forgets_what_the_pause_was_judged():
    detector = TurnDetector(READING)
    paused(detector)
    detector.judge("complete")
    events = feed(detector, [0.9] * 3 + [0.0] * (READING.early_asr_ms // WINDOW_MS))
    assert [type(e) for e in events] == [TurnResumed, TurnPaused]
    assert silence_until_the_end(detector) == READING.silence_ms


def silence_until_the_pause(detector: TurnDetector) -> int:
    """Speech, then silence until the pause; the silence it took, in ms."""
    feed(detector, [0.9] * 10)
    for windows in range(1, 100):
        if any(isinstance(e, TurnPaused) for e in feed(detector, [0.0])):
            return windows * WINDOW_MS
    raise AssertionError("no pause")


def test_the_pause_comes_sooner_while_recognition_has_nothing_to_do():
    idle = TurnDetector(READING, idle=lambda: True)
    busy = TurnDetector(READING, idle=lambda: False)
    assert silence_until_the_pause(idle) == 64  # the first window past early_asr_idle_ms (50)
    assert silence_until_the_pause(busy) == READING.early_asr_ms
    assert silence_until_the_pause(TurnDetector(READING)) == READING.early_asr_ms


def test_recognition_that_frees_up_during_a_pause_starts_it_then():
    free = iter([False, True])  # asked from 64 ms of silence on
    detector = TurnDetector(READING, idle=lambda: next(free))
    assert silence_until_the_pause(detector) == 3 * WINDOW_MS


def test_an_idle_wait_longer_than_the_busy_one_is_not_used():
    settings = TurnSettings(**{**READING.__dict__, "early_asr_idle_ms": 300})
    detector = TurnDetector(settings, idle=lambda: True)
    assert silence_until_the_pause(detector) == READING.early_asr_ms


def test_judging_between_turns_does_nothing():
    detector = TurnDetector(READING)
    assert detector.judge("complete") is None
    assert feed(detector, [0.0] * 5) == []


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("How long will it take to arrive?", "complete"),
        ("I need a new card.", "complete"),
        ("Can you fix it?", "complete"),
        ("What is it for?", "complete"),
        ("The light stays on.", "complete"),
        ("I was charged 40 dollars.", "complete"),
        ("What does plan 2 cost?", "complete"),
        ("Is it plan 2?", "complete"),
        ("Stop that!", "complete"),
        ("I need a new card and", "unfinished"),
        ("I need a new card and?", "unfinished"),
        ("I want to change my.", "unfinished"),
        ("I would like to talk to.", "unfinished"),
        ("My account number is 4 5 6 7.", "unfinished"),
        ("My account number is 4 5 6 7", "unfinished"),
        ("So, um.", "unfinished"),
        ("So, um,", "unfinished"),
        ("Well...", "unfinished"),
        ("the", "unfinished"),
        ("Hello,", "unmarked"),
        ("how much is that going to set me back,", "unmarked"),
        ("can I use the same one to come back home later", "unmarked"),
        ("", "unmarked"),
    ],
)
def test_how_the_words_of_a_pause_read(text, reading):
    assert read_words(text) == reading


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("Do you charge me anything extra reform at.", "unmarked"),
        ("I need a new card and", "unmarked"),
        ("I need a new card and?", "unmarked"),
        ("My account number is 4 5 6 7.", "unfinished"),  # digits are seldom misheard as digits
        ("Well...", "unfinished"),
        ("How long will it take to arrive?", "complete"),
        ("Hello,", "unmarked"),
    ],
)
def test_a_doubted_last_word_that_leads_on_tells_nothing(text, reading):
    assert read_words(text, doubted=True) == reading
