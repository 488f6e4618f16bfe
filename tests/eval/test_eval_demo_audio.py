"""eval/make_audio.py: the telephone and noise channels, reading the text list, and suites
spoken by espeak-ng and flite (which skip where those are not installed, and fail under CI)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "make_audio.py"
ENGINES = ("espeak-ng", "flite")


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
    from voice.channels.codecs import float_to_int16, mulaw_decode

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
        make_audio.load_text_list(questions)
    questions.write_text("cases:\n- {id: a, text: Hi, expect: {sources: x}}\n")
    with pytest.raises(ValueError, match="unknown expect keys"):
        make_audio.load_text_list(questions)
    questions.write_text("cases:\n- id: a\n  turns: [{text: Hi}, {text: 'And?', speak: And}]\n")
    text_list = make_audio.load_text_list(questions)
    [question] = text_list.questions
    assert question.multi_turn and [t.speak for t in question.turns] == ["Hi", "And"]
    assert text_list.voices == ("piper",) and text_list.format == "wav"
    assert [c.name for c in text_list.conditions] == ["clean", "pace", "telephone", "noisy"]


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ("voices: [espeak:en-us]", "voice 'espeak:en-us'"),
        ("voices: ['flite:']", "voice 'flite:'"),
        ("voices: [piper, piper]", "different voices"),
        ("voices: [{piper: 1}]", "different voices"),
        ("conditions: [clean, windy]", "`conditions`"),
        ("conditions: [noisy]", "made from the clean"),
        ("format: mp3", "`format`"),
    ],
)
def test_the_voices_conditions_and_format_are_checked(make_audio, tmp_path, keys, error):
    questions = tmp_path / "questions.yaml"
    questions.write_text(f"{keys}\ncases:\n- {{id: a, text: Hi}}\n")
    with pytest.raises(ValueError, match=error):
        make_audio.load_text_list(questions)


def test_the_voices_take_turns_by_the_cases_order(make_audio, tmp_path):
    questions = tmp_path / "questions.yaml"
    questions.write_text(
        "voices: [flite:slt, espeak-ng:en-gb+f2]\n"
        "cases:\n- {id: a, text: Hi}\n- {id: b, text: Ho}\n- {id: c, text: Ha}\n"
    )
    text_list = make_audio.load_text_list(questions)
    voices = [text_list.voice(q) for q in text_list.questions]
    assert voices == ["flite:slt", "espeak-ng:en-gb+f2", "flite:slt"]


def require_engines() -> None:
    """Skip (fail, under CI) unless espeak-ng and flite are installed."""
    missing = [engine for engine in ENGINES if shutil.which(engine) is None]
    if not missing:
        return
    reason = f"needs {' and '.join(missing)} (apt-get install {' '.join(missing)})"
    if os.environ.get("CI"):
        pytest.fail(reason + "; CI must run it", pytrace=False)
    pytest.skip(reason)


def test_an_unknown_voice_is_refused_before_anything_is_spoken(make_audio, tmp_path):
    require_engines()
    for voice, error in [("flite:nobody", "flite has"), ("espeak-ng:en-us+nobody", "variant")]:
        with pytest.raises(ValueError, match=error):
            make_audio.check_voices(("piper", voice))


TWO_VOICES = """\
kb: kb
voices: [espeak-ng:en-us+m3, flite:slt]
conditions: [clean, telephone, noisy]
format: flac
cases:
  - id: warranty
    text: How long is the warranty?
    expect: {source: faq#warranty-length}
  - id: returns
    text: Can I return a product after 30 days?
"""


def test_a_list_spoken_by_espeak_ng_and_flite(make_audio, tmp_path):
    from voice.clients.client import read_audio
    from voice.eval.suite import load_suite

    require_engines()
    (tmp_path / "kb").mkdir()
    questions = tmp_path / "questions.yaml"
    questions.write_text(TWO_VOICES, encoding="utf-8")
    done = make_audio.make(questions)
    assert (done.questions, done.files, done.made) == (2, 6, 6)
    assert done.suites == ("clean.yaml", "telephone.yaml", "noisy.yaml")
    assert not (tmp_path / "pace.yaml").exists()

    index = json.loads((tmp_path / "audio" / "index.json").read_text(encoding="utf-8"))
    assert index["audio/clean/warranty.flac"][-1] == "espeak-ng:en-us+m3"
    assert index["audio/noisy/returns.flac"][-1] == "flite:slt"
    for name, rate in [("clean", 16_000), ("telephone", 8_000), ("noisy", 16_000)]:
        suite = load_suite(tmp_path / f"{name}.yaml")  # as `voicedesk eval` reads it
        assert [case.id.split("@")[0] for case in suite.cases] == ["warranty", "returns"]
        for case in suite.cases:
            [question] = case.questions
            info = soundfile.info(question.audio)
            assert (info.format, info.subtype, info.samplerate, info.channels) == (
                "FLAC",
                "PCM_16",
                rate,
                1,
            )
            assert info.duration > 0.5
            assert len(read_audio(question.audio, 16_000)) > 8_000
    header = (tmp_path / "telephone.yaml").read_text(encoding="utf-8").splitlines()[1]
    assert header.endswith("8 kHz 16-bit FLAC.")

    assert make_audio.make(questions).made == 0  # unchanged questions are not spoken again
