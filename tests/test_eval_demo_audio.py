"""eval/make_audio.py: the telephone and noise channels, and reading the text list."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "eval" / "make_audio.py"


@pytest.fixture(scope="module")
def make_audio():
    spec = importlib.util.spec_from_file_location("make_audio", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_audio"] = module  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["make_audio"]


def tone(hz: float, seconds: float = 1.0, rate: int = 16_000) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def level_db(audio: np.ndarray) -> float:
    middle = audio[len(audio) // 4 : -len(audio) // 4]  # away from the filter's edges
    return 20 * np.log10(np.sqrt(np.mean(np.square(middle, dtype=np.float64))) + 1e-12)


@pytest.mark.parametrize(("hz", "low", "high"), [(1000, -1, 1), (3000, -1, 1), (100, -200, -40)])
def test_the_band_pass_keeps_the_telephone_band(make_audio, hz, low, high):
    gain = level_db(make_audio.bandpass(tone(hz), 16_000, 300, 3400)) - level_db(tone(hz))
    assert low < gain < high


def test_the_band_pass_cuts_above_the_band(make_audio):
    gain = level_db(make_audio.bandpass(tone(5000), 16_000, 300, 3400)) - level_db(tone(5000))
    assert gain < -40


def test_the_telephone_channel_is_8_khz_mulaw(make_audio):
    from voice.codecs import float_to_int16, mulaw_decode

    line, rate = make_audio.telephone(tone(1000), 16_000)
    assert rate == 8000 and len(line) == 8000
    codes = set(mulaw_decode(bytes(range(256))).tolist())
    assert set(float_to_int16(line).tolist()) <= codes
    assert abs(level_db(line) - level_db(tone(1000))) < 1


def test_noise_is_added_at_the_asked_snr(make_audio):
    rng = np.random.default_rng(1)
    speech = np.concatenate(
        [np.zeros(8000, np.float32), tone(440, 2.0), np.zeros(8000, np.float32)]
    )
    babble = [tone(200, 0.7), tone(350, 1.3)]
    noisy = make_audio.add_noise(speech, babble, rng, 15.0)
    noise = noisy - speech
    assert np.all(noise[:8000] != 0)  # the silence is noisy too
    snr = level_db(tone(440, 2.0)) - 20 * np.log10(np.sqrt(np.mean(noise.astype(np.float64) ** 2)))
    assert snr == pytest.approx(15.0, abs=0.1)


def test_the_text_list_is_checked(make_audio, tmp_path):
    questions = tmp_path / "questions.yaml"
    questions.write_text("cases:\n- {id: a, text: Hi}\n- {id: a, text: Ho}\n")
    with pytest.raises(ValueError, match="used twice"):
        make_audio.load_questions(questions)
    questions.write_text("cases:\n- {id: a, text: Hi, expect: {sources: x}}\n")
    with pytest.raises(ValueError, match="unknown expect keys"):
        make_audio.load_questions(questions)
    questions.write_text("cases:\n- id: a\n  turns: [{text: Hi}, {text: 'And?', speak: And}]\n")
    [question], _ = make_audio.load_questions(questions)
    assert question.multi_turn and [t.speak for t in question.turns] == ["Hi", "And"]
