"""Whether the recognizer trusts a transcript: pure, from faster-whisper's segment numbers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from asr.settings import AsrSettings
from asr.whisper import Transcript, is_reliable

SETTINGS = AsrSettings()


def test_a_confident_transcript_of_speech_is_reliable() -> None:
    assert is_reliable(-0.2, 0.05, 1.4, SETTINGS)
    assert is_reliable(
        SETTINGS.min_avg_logprob,
        SETTINGS.max_no_speech_prob,
        SETTINGS.max_compression_ratio,
        SETTINGS,
    )  # the limits themselves are still trusted


@pytest.mark.parametrize(
    ("avg_logprob", "no_speech_prob", "compression_ratio"),
    [
        (-0.9, 0.05, 1.4),  # unlikely tokens: probably misheard
        (-0.2, 0.8, 1.4),  # more likely noise than speech
        (-0.2, 0.05, 3.1),  # the same words again and again: a recognition loop
    ],
)
def test_any_one_doubt_makes_a_transcript_unreliable(
    avg_logprob: float, no_speech_prob: float, compression_ratio: float
) -> None:
    assert not is_reliable(avg_logprob, no_speech_prob, compression_ratio, SETTINGS)


def test_the_limits_are_settings() -> None:
    lenient = replace(SETTINGS, min_avg_logprob=-1.0)
    assert not is_reliable(-0.9, 0.05, 1.4, SETTINGS)
    assert is_reliable(-0.9, 0.05, 1.4, lenient)
    assert not is_reliable(-0.2, 0.05, 1.4, replace(SETTINGS, min_avg_logprob=0.0))


def test_a_transcript_is_trusted_unless_the_recognizer_says_otherwise() -> None:
    transcript = Transcript("hello", "en", 1.0)
    assert transcript.reliable
    assert (transcript.avg_logprob, transcript.no_speech_prob, transcript.compression_ratio) == (
        0.0,
        0.0,
        1.0,
    )
