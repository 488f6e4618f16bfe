"""Speak an evaluation suite's questions, and write its suites.

    python eval/make_audio.py                      # the demo suite: eval/demo/questions.yaml
    python eval/make_audio.py my/questions.yaml    # another text list, same layout
    python eval/make_audio.py --force              # speak every question again

Reads the text list (see eval/demo/questions.yaml) and writes, beside it:

- `audio/<condition>/<id>.wav` (`<id>-<turn>.wav` for the turns of a multi-turn case), for
  each condition the list asks for (default: all of `CONDITIONS`): mono 16-bit audio with
  a little silence before and after, WAV or (`format: flac`) FLAC;
- one suite per condition, `<condition>.yaml`, in the format `voicedesk eval` reads
  (docs/eval.md); every case once, its id tagged with the condition (`bulb-red@tel`);
- `audio/index.json`: what each file was made from, and by which voice when it is not the
  bundled Piper voice. A file is made again only when its question, pace, channel or voice
  changed (or with `--force`), because Piper's speech differs a little on every run and
  unchanged audio should not churn in git.

The voices are the bundled Piper voice (the default), or those the list's `voices:` names
from espeak-ng and flite (Debian's packages); each case is spoken by one of them, in turn by
the case's place in the list.

Everything runs on the CPU in well under a minute for the demo suite. The noise is seeded from
each file's name, so a file's noise does not change when other questions are added.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import yaml

RATE = 16_000
"""Sample rate of the clean, pace and noisy audio (Hz): what the recognizer works at."""
TELEPHONE_RATE = 8_000
"""Sample rate of the telephone audio (Hz): G.711."""
LEAD_S = 0.3
TRAIL_S = 0.4
"""Silence before and after each question (s); the caller's client adds the end-of-turn pause."""
PEAK = 0.5
"""Peak level of the clean speech (-6 dBFS), leaving headroom for noise."""
TELEPHONE_BAND = (300.0, 3400.0)
"""Pass band of the telephone channel (Hz), as in ITU-T G.712."""
NOISE_SNR_DB = 15.0
"""Speech-to-noise ratio of the noisy condition, over the voiced part of the question (dB)."""
BABBLE_TALKERS = 5
"""Other questions mixed, at other pitches, into the background babble (spoken by the other
voices when the list has several)."""
PACES = (0.85, 1.15)
"""Length scales of the pace condition, as Piper's: each case is fast or slow (below 1 is
faster). espeak-ng's rate and flite's duration stretch are set to match."""
PIPER = "piper"
"""The bundled Piper voice, in a list's `voices`; the others are `espeak-ng:NAME` (any
`espeak-ng -v` name, e.g. `en-us+m3`) and `flite:NAME` (one of `flite -lv`)."""
ENGINES = ("espeak-ng", "flite")
ESPEAK_WPM = 175
"""espeak-ng's own default rate (words a minute): length scale 1."""
FORMATS = {"wav": "PCM16 WAV", "flac": "16-bit FLAC"}
"""The audio formats a list may ask for (`format:`, default wav), as the suites describe them."""
CHANNEL_VERSION = 1
"""Bump when the processing below changes, so that every file is made again."""

ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
EXPECT_KEYS = frozenset({"source", "says", "handoff", "never"})


# ----------------------------------------------------------------------------- the text list


@dataclass(frozen=True)
class Turn:
    """One question of a case."""

    text: str
    """What the caller says: the reference transcript."""
    speak: str
    """What the voice is given to say (`text` unless the list says otherwise)."""
    expect: dict[str, Any]


@dataclass(frozen=True)
class Question:
    """One case of the text list: a single question, or the turns of one call."""

    id: str
    turns: tuple[Turn, ...]
    multi_turn: bool


@dataclass(frozen=True)
class TextList:
    """A text list: its questions, and how to speak them."""

    questions: list[Question]
    extra: dict[str, Any]
    """Keys copied into every suite (`kb`)."""
    voices: tuple[str, ...]
    """`PIPER`, `espeak-ng:NAME` or `flite:NAME` each."""
    conditions: tuple[Condition, ...]
    """The conditions to make, in the order of `CONDITIONS`."""
    format: str
    """"wav" or "flac": the audio files' format and suffix."""

    def voice(self, question: Question) -> str:
        """The voice that speaks every turn of `question`: the voices in turn, by the case's
        place in the list (so that each speaks as many cases as the others)."""
        return self.voices[self.questions.index(question) % len(self.voices)]


def load_text_list(path: Path) -> TextList:
    """The questions of a text list, the keys to copy into every suite, the voices, the
    conditions and the audio format.

    Raises:
        ValueError: a malformed list, naming the case or the key.
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise ValueError(f"{path}: expected a mapping with a list of `cases`")
    extra = {"kb": data["kb"]} if "kb" in data else {}
    questions: list[Question] = []
    for entry in data["cases"]:
        case_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(case_id, str) or not ID.match(case_id):
            raise ValueError(f"{path}: case {entry!r}: needs an id of a-z, 0-9 and dashes")
        if any(q.id == case_id for q in questions):
            raise ValueError(f"{path}: case {case_id}: the id is used twice")
        multi = "turns" in entry
        items = entry["turns"] if multi else [entry]
        if not isinstance(items, list) or not items:
            raise ValueError(f"{path}: case {case_id}: `turns` must be a list of questions")
        turns = tuple(_turn(path, case_id, item) for item in items)
        questions.append(Question(case_id, turns, multi))
    audio_format = data.get("format", "wav")
    if audio_format not in FORMATS:
        raise ValueError(f"{path}: `format` must be one of {', '.join(FORMATS)}")
    return TextList(questions, extra, _voices(path, data), _conditions(path, data), audio_format)


def _voices(path: Path, data: dict[str, Any]) -> tuple[str, ...]:
    voices = data.get("voices", [PIPER])
    if not _strings(voices) or len(set(voices)) != len(voices):
        raise ValueError(f"{path}: `voices` must be a list of different voices")
    for voice in voices:
        engine, _, name = voice.partition(":")
        if voice != PIPER and (engine not in ENGINES or not name):
            raise ValueError(
                f"{path}: voice {voice!r}: expected {PIPER!r}, 'espeak-ng:NAME' or 'flite:NAME'"
            )
    return tuple(voices)


def _conditions(path: Path, data: dict[str, Any]) -> tuple[Condition, ...]:
    names = data.get("conditions", [c.name for c in CONDITIONS])
    known = {c.name for c in CONDITIONS}
    if not _strings(names) or not set(names) <= known:
        raise ValueError(f"{path}: `conditions` must be a list of {', '.join(sorted(known))}")
    chosen = tuple(c for c in CONDITIONS if c.name in names)
    if "clean" not in names and any(c.channel != "none" for c in chosen):
        raise ValueError(f"{path}: the telephone and noisy audio is made from the clean: list it")
    return chosen


def _strings(value: Any) -> bool:
    """Whether `value` is a list of strings, not empty."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _turn(path: Path, case_id: str, item: Any) -> Turn:
    text = item.get("text") if isinstance(item, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{path}: case {case_id}: every question needs a `text`")
    expect = item.get("expect") or {}
    unknown = set(expect) - EXPECT_KEYS
    if unknown:
        raise ValueError(f"{path}: case {case_id}: unknown expect keys {sorted(unknown)}")
    return Turn(text.strip(), str(item.get("speak", text)).strip(), dict(expect))


# ----------------------------------------------------------------------------- channels


def telephone(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """A phone line: band-passed to 300-3400 Hz, at 8 kHz, through G.711 μ-law and back."""
    from voice.channels.codecs import (
        float_to_int16,
        int16_to_float,
        mulaw_decode,
        mulaw_encode,
        resample,
    )

    narrow = resample(bandpass(audio, rate, *TELEPHONE_BAND), rate, TELEPHONE_RATE)
    line = mulaw_decode(mulaw_encode(float_to_int16(narrow)))
    return int16_to_float(line), TELEPHONE_RATE


def bandpass(audio: np.ndarray, rate: int, low: float, high: float, taps: int = 511) -> np.ndarray:
    """Linear-phase FIR band-pass (windowed sinc, Blackman): about 170 Hz transitions at 16 kHz,
    over 70 dB down outside them. Same length and alignment as the input."""
    n = np.arange(taps) - (taps - 1) / 2

    def lowpass(cutoff: float) -> np.ndarray:
        return 2 * cutoff / rate * np.sinc(2 * cutoff / rate * n)

    kernel = (lowpass(high) - lowpass(low)) * np.blackman(taps)
    return np.convolve(audio, kernel, mode="same").astype(np.float32)


def add_noise(
    audio: np.ndarray, babble: list[np.ndarray], rng: np.random.Generator, snr_db: float
) -> np.ndarray:
    """`audio` with background talkers (`babble`, at random pitches and offsets) and pink noise,
    together at `snr_db` below the speech's voiced level. Noise fills the silences too."""
    from voice.channels.codecs import resample

    length = len(audio)
    crowd = np.zeros(length, dtype=np.float64)
    for voice in babble:
        shifted = resample(voice, RATE, int(RATE * rng.uniform(0.85, 1.2))).astype(np.float64)
        looped = np.tile(shifted, length // max(len(shifted), 1) + 2)
        start = int(rng.integers(0, len(shifted)))
        crowd += looped[start : start + length] / _rms(shifted)
    noise = crowd / _rms(crowd) + pink_noise(length, rng)
    gain = _voiced_rms(audio) / _rms(noise) * 10 ** (-snr_db / 20)
    return (audio + gain * noise).astype(np.float32)


def pink_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with a 1/f power spectrum (white noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    pink = np.fft.irfft(spectrum, length)
    return pink / _rms(pink)


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) or 1.0


def _voiced_rms(audio: np.ndarray, frame: int = 320) -> float:
    """RMS over the 20 ms frames within 30 dB of the loudest one: the level of the speech."""
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame).astype(np.float64)
    power = np.mean(frames**2, axis=1)
    voiced = power[power >= power.max() / 1000]
    return float(np.sqrt(voiced.mean()))


# ----------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Condition:
    """One channel condition: one suite file and one audio folder."""

    name: str
    """File stem of the suite and folder of its audio."""
    about: str
    """One line for the suite's header; `{voices}` and `{format}` are filled in."""
    pace: Callable[[Question], float]
    """The length scale a case is spoken at."""
    tag: Callable[[Question], str]
    """The suffix of the case id after the "@"."""
    channel: str = "none"
    """"none", "telephone" or "noise"."""


def _paced(question: Question) -> float:
    """Fast or slow, chosen by the id so it stays the same when the list changes."""
    return PACES[zlib.crc32(question.id.encode()) % len(PACES)]


CONDITIONS = (
    Condition("clean", "{voices} at normal pace, 16 kHz", lambda q: 1.0, lambda q: "1.0"),
    Condition(
        "pace",
        f"the same voice faster ({PACES[0]}) or slower ({PACES[1]}), half the cases each, 16 kHz",
        _paced,
        lambda q: f"{_paced(q):g}",
    ),
    Condition(
        "telephone",
        "clean speech through a phone line: 300-3400 Hz, G.711 mu-law, 8 kHz {format}",
        lambda q: 1.0,
        lambda q: "tel",
        channel="telephone",
    ),
    Condition(
        "noisy",
        f"clean speech with background talkers and pink noise at {NOISE_SNR_DB:g} dB SNR, 16 kHz",
        lambda q: 1.0,
        lambda q: "noise",
        channel="noise",
    ),
)


# ----------------------------------------------------------------------------- the voices


class Speaker:
    """The voices at any pace: the bundled Piper voice (one loaded per pace, made when first
    asked), and espeak-ng or flite, run once per question."""

    def __init__(self) -> None:
        self._piper: dict[float, Any] = {}

    def say(self, text: str, voice: str, length_scale: float) -> np.ndarray:
        """Float32 speech at `RATE` Hz, peak `PEAK`, padded with silence."""
        from voice.channels.codecs import resample

        speech, rate = (
            self._say_piper(text, length_scale)
            if voice == PIPER
            else engine_speech(voice, text, length_scale)
        )
        speech = resample(speech, rate, RATE)
        speech = _trimmed(speech * (PEAK / max(float(np.abs(speech).max()), 1e-6)))
        pad = [np.zeros(int(RATE * s), dtype=np.float32) for s in (LEAD_S, TRAIL_S)]
        return np.concatenate([pad[0], speech.astype(np.float32), pad[1]])

    def _say_piper(self, text: str, length_scale: float) -> tuple[np.ndarray, int]:
        from tts.piper import Synthesizer
        from tts.settings import TtsSettings
        from voice.channels.codecs import int16_to_float

        if length_scale not in self._piper:
            self._piper[length_scale] = Synthesizer(TtsSettings(length_scale=length_scale))
        piper = self._piper[length_scale]
        return int16_to_float(piper.synthesize_blocking(text)), piper.sample_rate

    def close(self) -> None:
        for piper in self._piper.values():
            piper.close()


def engine_speech(voice: str, text: str, length_scale: float) -> tuple[np.ndarray, int]:
    """`text` said by an espeak-ng or flite `voice` (`engine:name`), as it is (digits too):
    float32 mono at the engine's own rate (8, 16 or 22.05 kHz), and that rate.

    Raises:
        ValueError: the engine failed (an unknown espeak-ng language, say).
    """
    engine, _, name = voice.partition(":")
    with tempfile.TemporaryDirectory() as folder:
        text_file, wav = Path(folder) / "text.txt", Path(folder) / "speech.wav"
        text_file.write_text(text, encoding="utf-8")  # a file: text may start with a dash
        if engine == "espeak-ng":
            speed = str(round(ESPEAK_WPM / length_scale))
            args = ["-v", name, "-s", speed, "-f", str(text_file), "-w", str(wav)]
        else:
            stretch = f"duration_stretch={length_scale:g}"
            args = ["-voice", name, "--setf", stretch, "-f", str(text_file), "-o", str(wav)]
        done = subprocess.run([engine, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0 or not wav.exists():
            raise ValueError(f"{voice} could not say {text!r}: {done.stderr.strip()}")
        speech, rate = soundfile.read(wav, dtype="float32")
    return speech, rate


def check_voices(voices: tuple[str, ...]) -> None:
    """Fail before anything is spoken when an engine is missing or does not know a voice:
    flite and espeak-ng's variants (`+m3`) fall back to a default voice without a word.

    Raises:
        ValueError: naming the voice.
    """
    known: dict[str, set[str]] = {}
    for engine in sorted({v.partition(":")[0] for v in voices if v != PIPER}):
        if shutil.which(engine) is None:
            raise ValueError(f"{engine} is not installed (apt-get install {engine})")
        if engine == "flite":
            listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True)
            known[engine] = set(listing.stdout.partition(":")[2].split())
        else:  # the variants' files are the 5th column: !v/m3
            listing = subprocess.run(
                ["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True
            )
            rows = [line.split() for line in listing.stdout.splitlines()[1:]]
            known[engine] = {row[4].removeprefix("!v/") for row in rows if len(row) > 4}
    for voice in voices:
        engine, _, name = voice.partition(":")
        if engine == "flite" and name not in known[engine]:
            raise ValueError(f"voice {voice!r}: flite has {', '.join(sorted(known[engine]))}")
        variant = name.partition("+")[2]
        if engine == "espeak-ng" and variant and variant not in known[engine]:
            raise ValueError(f"voice {voice!r}: espeak-ng has no variant {variant!r}")


def _trimmed(speech: np.ndarray, margin_s: float = 0.05) -> np.ndarray:
    """Speech without the voice's own leading and trailing silence (40 dB below the peak), but
    for `margin_s`, so that the padding is exactly what `LEAD_S` and `TRAIL_S` say."""
    loud = np.flatnonzero(np.abs(speech) > PEAK / 100)
    if not len(loud):
        return speech
    margin = int(RATE * margin_s)
    return speech[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


# ----------------------------------------------------------------------------- making it


def audio_name(question: Question, number: int, suffix: str = "wav") -> str:
    stem = f"{question.id}-{number}" if question.multi_turn else question.id
    return f"{stem}.{suffix}"


@dataclass(frozen=True)
class Made:
    """What a run of `make` did, for the log."""

    questions: int
    files: int
    """Audio files of the suites."""
    made: int
    """Of them, made in this run."""
    size: int
    """Bytes of the audio files."""
    suites: tuple[str, ...]
    """File names of the suites written."""


def make(questions_path: Path, force: bool = False) -> Made:
    """Make the missing or outdated audio and write the suites.

    The conditions are made in order: the telephone and noisy audio are made from the clean
    files, so they always carry the same speech.

    Raises:
        ValueError: a malformed list, or a voice that cannot speak.
    """
    text_list = load_text_list(questions_path)
    check_voices(text_list.voices)
    root = questions_path.parent
    index_path = root / "audio" / "index.json"
    index: dict[str, list[Any]] = {}
    if index_path.exists() and not force:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    wanted: list[str] = []
    made = 0
    fresh: set[str] = set()  # clean files made in this run: what is made from them is too
    speaker = Speaker()
    try:
        for condition in text_list.conditions:
            for question in text_list.questions:
                pace, voice = condition.pace(question), text_list.voice(question)
                for number, turn in enumerate(question.turns, 1):
                    name = audio_name(question, number, text_list.format)
                    relative = f"audio/{condition.name}/{name}"
                    wanted.append(relative)
                    made_from = [turn.speak, pace, condition.channel, CHANNEL_VERSION]
                    made_from += [voice] if voice != PIPER else []
                    current = index.get(relative) == made_from and (root / relative).exists()
                    if current and not (condition.channel != "none" and name in fresh):
                        continue
                    audio, rate = _channel(root, text_list, condition, question, number, speaker)
                    _write(root / relative, audio, rate)
                    index[relative] = made_from
                    made += 1
                    if condition.channel == "none" and pace == 1.0:
                        fresh.add(name)
    finally:
        speaker.close()
    for stale in sorted(set(index) - set(wanted)):  # questions taken out of the list
        (root / stale).unlink(missing_ok=True)
        del index[stale]
    lines = [f"{json.dumps(name)}: {json.dumps(index[name])}" for name in sorted(index)]
    index_path.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    for condition in text_list.conditions:
        write_suite(root / f"{condition.name}.yaml", condition, text_list, questions_path)
    return Made(
        questions=len(text_list.questions),
        files=len(wanted),
        made=made,
        size=sum((root / relative).stat().st_size for relative in wanted),
        suites=tuple(f"{condition.name}.yaml" for condition in text_list.conditions),
    )


def _channel(
    root: Path,
    text_list: TextList,
    condition: Condition,
    question: Question,
    number: int,
    speaker: Speaker,
) -> tuple[np.ndarray, int]:
    """The audio of turn `number` of `question` in `condition`, and its sample rate. The
    telephone and noisy audio are made from the clean file."""
    name = audio_name(question, number, text_list.format)
    if condition.channel == "none":
        text = question.turns[number - 1].speak
        return speaker.say(text, text_list.voice(question), condition.pace(question)), RATE
    audio = soundfile.read(root / "audio" / "clean" / name, dtype="float32")[0]
    if condition.channel == "telephone":
        return telephone(audio, RATE)
    rng = np.random.default_rng(zlib.crc32(f"audio/{condition.name}/{name}".encode()))
    babble = _babble(root, text_list, question, rng)
    return add_noise(audio, babble, rng, NOISE_SNR_DB), RATE


def _write(path: Path, audio: np.ndarray, rate: int) -> None:
    """16-bit mono, WAV or FLAC by the file's suffix."""
    from voice.channels.codecs import float_to_int16

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, float_to_int16(audio), rate, subtype="PCM_16")


def _babble(
    root: Path, text_list: TextList, current: Question, rng: np.random.Generator
) -> list[np.ndarray]:
    """Clean recordings of other questions to talk over; of the other voices' questions when
    the list has several voices, so that no talker sounds like the caller."""
    voice = text_list.voice(current)
    pool = sorted(
        root / "audio" / "clean" / audio_name(question, number, text_list.format)
        for question in text_list.questions
        if question is not current
        and (len(text_list.voices) == 1 or text_list.voice(question) != voice)
        for number in range(1, len(question.turns) + 1)
    )
    picked = rng.choice(len(pool), size=min(BABBLE_TALKERS, len(pool)), replace=False)
    return [soundfile.read(pool[i], dtype="float32")[0] for i in sorted(picked)]


def write_suite(path: Path, condition: Condition, text_list: TextList, source: Path) -> None:
    cases: list[dict[str, Any]] = []
    for question in text_list.questions:
        case_id = f"{question.id}@{condition.tag(question)}"
        turns = [
            {
                "audio": f"audio/{condition.name}/"
                + audio_name(question, number, text_list.format),
                "text": turn.text,
                **({"expect": turn.expect} if turn.expect else {}),
            }
            for number, turn in enumerate(question.turns, 1)
        ]
        cases.append(
            {"id": case_id, "turns": turns} if question.multi_turn else {"id": case_id, **turns[0]}
        )
    about = condition.about.format(
        voices=describe_voices(text_list.voices), format=FORMATS[text_list.format]
    )
    header = (
        f"# Made by eval/make_audio.py from {source.name}: edit that list and run it again.\n"
        f"# Condition {condition.name!r}: {about}.\n"
    )
    extra = text_list.extra
    if condition.channel == "telephone":  # call as a phone line does: 8 kHz G.711 mu-law
        extra = {**extra, "channel": {"encoding": "mulaw", "sample_rate": 8000}}
    body = yaml.safe_dump({**extra, "cases": cases}, sort_keys=False, allow_unicode=True, width=100)
    path.write_text(header + body, encoding="utf-8")


def describe_voices(voices: tuple[str, ...]) -> str:
    if voices == (PIPER,):
        return "the bundled Piper voice"
    if len(voices) == 1:
        return f"the voice {voices[0]}"
    return f"{len(voices)} voices in turn, one per case (audio/index.json names it)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "questions",
        nargs="?",
        type=Path,
        default=Path(__file__).parent / "demo" / "questions.yaml",
        help="the text list (default: the demo suite's); the suites are written beside it",
    )
    parser.add_argument("--force", action="store_true", help="speak every question again")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        done = make(args.questions, force=args.force)
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"{done.questions} cases, {done.files} audio files ({done.made} made), "
        f"{done.size / 1e6:.1f} MB, in {time.monotonic() - started:.1f} s; suites: "
        + ", ".join(done.suites)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
