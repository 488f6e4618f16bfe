"""The fitted recognition window (`asr.fitted_window`): the words of Whisper's 30 s window, read
from a window the size of the question, and read again with a wider search whenever the first
reading is in doubt."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import asr.whisper
from asr.whisper import (
    SECOND_SEARCH,
    Search,
    Transcriber,
    compression_ratio,
    without_repeated_tail,
)
from voice.channels.codecs import resample
from voice.eval.wer import align

QUESTION = "Can I still pay my bill by check after the payment came back once?"
CLOSE = 2
"""Words a transcript may get wrong: Piper says the question a little differently each run, and
the small model mishears a word of it now and then, either way."""


def errors(transcript: str) -> int:
    return align(QUESTION, transcript).errors


@pytest.fixture(scope="module")
def full_window(models) -> Transcriber:
    return Transcriber(dataclasses.replace(models.transcriber.settings, fitted_window=False))


def telephone(audio: np.ndarray) -> np.ndarray:
    """The same speech after an 8 kHz line, back at 16 kHz."""
    return resample(resample(audio, 16_000, 8_000), 8_000, 16_000).astype(np.float32)


QUESTIONS = (
    QUESTION,
    "How long do I have to return a product I bought online?",
    "My package says delivered but it is not at my door, what should I do?",
)
SLIPS = 2
"""Words the fitted window may miss over all of `QUESTIONS` beyond what the whole window
misses: now and then it hears one word of a take as two ("payment" as "pain it"), which the
whole window hears right; one question is too few to tell that from a worse window."""


@pytest.mark.parametrize("line", ["clean", "telephone"])
def test_a_fitted_window_hears_what_the_whole_window_hears(models, say, full_window, line):
    fitted_errors = whole_errors = 0
    for question in QUESTIONS:
        audio = say(question)
        if line == "telephone":
            audio = telephone(audio)
        fitted = models.transcriber.transcribe_blocking(audio)
        whole = full_window.transcribe_blocking(audio)
        missed = align(question, fitted.text).errors
        assert fitted.fitted and not whole.fitted
        assert missed <= CLOSE, fitted.text
        assert fitted.reliable and fitted.no_speech_prob < 0.5 and fitted.avg_logprob > -0.5
        fitted_errors += missed
        whole_errors += align(question, whole.text).errors
    assert fitted_errors <= whole_errors + SLIPS


def test_the_hint_reaches_the_fitted_window(models, say):
    audio = say("Does the Zentrix thermostat work with Alexa?")  # heard as "Zintrix" unhinted
    hinted = models.transcriber.transcribe_blocking(audio, hotwords="Zentrix thermostat")
    assert hinted.fitted and "Zentrix" in hinted.text


def test_fitted_windows_are_whole_seconds_whatever_the_audios_length(models, say, encodings):
    """Few lengths of input: the model's native code keeps buffers for each one it has read."""
    transcriber = models.transcriber
    audio = say(QUESTION)
    margin = transcriber.settings.window_margin_s
    for cut_s in (1.23, 1.71, 2.02):
        transcriber.transcribe_blocking(audio[: round(cut_s * 16_000)], once=True)
    assert encodings == [400, 400, 500], f"frames read for {margin} s of margin: {encodings}"


def test_audio_longer_than_one_window_is_read_the_full_way(models, say):
    audio = say(QUESTION)
    long = np.concatenate([audio, np.zeros(16_000 * 30 - len(audio), np.float32)])
    heard = models.transcriber.transcribe_blocking(long)
    assert not heard.fitted and errors(heard.text) <= CLOSE, heard.text


class Spy:
    """The model, noting each encoding's input length and each decoding's search."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.searches: list[Search] = []

    def generate(self, *args: object, **options: object) -> object:
        self.searches.append(
            Search(**{f.name: options[f.name] for f in dataclasses.fields(Search)})
        )
        return self.model.generate(*args, **options)

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)


@pytest.fixture
def decodings(models, monkeypatch) -> list[Search]:
    """The search of every decoding the shared recognizer makes in the test."""
    whisper = models.transcriber._model
    spy = Spy(whisper.model)
    monkeypatch.setattr(whisper, "model", spy)
    return spy.searches


@pytest.fixture
def encodings(models, monkeypatch) -> list[int]:
    """The frames of every window the shared recognizer encodes in the test."""
    whisper = models.transcriber._model
    read: list[int] = []
    encode = whisper.encode

    def noting(features: np.ndarray) -> object:
        read.append(features.shape[-1])
        return encode(features)

    monkeypatch.setattr(whisper, "encode", noting)
    return read


def first_search(models) -> Search:
    return Search(beam_size=models.transcriber.settings.beam_size)


def test_a_doubted_fitted_transcript_is_read_again_with_the_wider_search(
    models, say, monkeypatch, decodings, encodings
):
    """The same encoded window, decoded again: a beam search that holds back words already
    said, not the 30 s windows that took seconds. Still in doubt, it is not trusted."""
    monkeypatch.setattr(asr.whisper, "FALLBACK_LOGPROB", 0.0)  # every transcript is unlikely
    heard = models.transcriber.transcribe_blocking(say(QUESTION))
    assert heard.fitted and heard.read_again and errors(heard.text) <= CLOSE, heard.text
    assert not heard.reliable
    assert decodings == [first_search(models), SECOND_SEARCH]
    assert len(encodings) == 1


def test_a_fitted_transcript_that_runs_on_is_read_again(models, say, monkeypatch, decodings):
    monkeypatch.setattr(asr.whisper, "TOKENS_PER_S", 0)
    monkeypatch.setattr(asr.whisper, "TOKENS_SLACK", 3)  # every question "runs on" past 3
    heard = models.transcriber.transcribe_blocking(say(QUESTION))
    assert heard.fitted and heard.read_again and not heard.reliable
    assert decodings == [first_search(models), SECOND_SEARCH]


def test_a_trusted_fitted_transcript_is_read_once(models, say, decodings):
    heard = models.transcriber.transcribe_blocking(say(QUESTION))
    assert heard.fitted and not heard.read_again and errors(heard.text) <= CLOSE, heard.text
    assert decodings == [first_search(models)]


def test_a_partial_read_once_keeps_a_doubted_fitted_transcript(models, say, monkeypatch, decodings):
    """A partial transcript (`once`) is never read again: the final transcript replaces it.
    The final transcript still is."""
    monkeypatch.setattr(asr.whisper, "FALLBACK_LOGPROB", 0.0)  # every transcript is unlikely
    audio = say(QUESTION)
    partial = models.transcriber.transcribe_blocking(audio, once=True)
    assert partial.fitted and not partial.read_again
    assert errors(partial.text) <= CLOSE, partial.text
    assert decodings == [first_search(models)]
    final = models.transcriber.transcribe_blocking(audio)
    assert final.read_again


def test_a_doubted_fitted_transcript_no_one_awaits_is_not_read_again(
    models, say, monkeypatch, decodings
):
    """In a worker, `wanted` turns False once the caller went on (a pause's transcript): a
    second reading would hold the recognizer for no one."""
    monkeypatch.setattr(asr.whisper, "FALLBACK_LOGPROB", 0.0)  # every transcript is unlikely
    monkeypatch.setattr(models.transcriber, "wanted", lambda: False)
    abandoned = models.transcriber.transcribe_blocking(say(QUESTION))
    assert abandoned.fitted and not abandoned.read_again
    assert errors(abandoned.text) <= CLOSE, abandoned.text
    assert decodings == [first_search(models)]


def test_words_that_repeat_compress_well() -> None:
    assert compression_ratio("") == 1.0
    assert compression_ratio(QUESTION) < 1.5
    assert compression_ratio("thank you " * 30) > 2.4  # the recognition loop's limit


@pytest.mark.parametrize(
    ("heard", "kept"),
    [
        ("I lost my purse. I lost my purse.", "I lost my purse."),
        ("Can you stop it? Can you stop it? Can you stop it?", "Can you stop it?"),
        (
            "When is it, I'm flying Tuesday. I'm flying Tuesday. I'm flying",
            "When is it, I'm flying Tuesday.",
        ),
        ("I need a new card. How long does a new card take?", None),  # said twice, not a tail
        ("It is very, very cold.", None),  # too short a repeat to be the model's
        ("Is it on? Is it", None),
    ],
)
def test_a_tail_that_says_the_last_words_again_is_dropped(heard: str, kept: str | None) -> None:
    assert without_repeated_tail(heard) == (kept or heard)
