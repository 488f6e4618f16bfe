r"""The `voicedesk eval` suite file: recorded questions and what their answers must do.

A suite is one YAML file; paths in it are relative to it:

    kb: ./kb                       # optional: the KB an in-process server answers from
    channel: {encoding: mulaw, sample_rate: 8000}   # optional: how every case calls
    cases:
      - id: bulb-red
        audio: audio/bulb-red.wav  # any format `voicedesk call` reads
        text: My smart bulb keeps flashing red, what should I do?   # optional, for the WER
        channel: {encoding: pcm16, sample_rate: 16000}   # optional: this case's call only
        expect:
          source: troubleshooting#4.2   # among the answer's sources
          says: ["2.4"]                 # in the reply, ignoring case (a string or a list)
          handoff: false                # the call is (true) or is not (false) handed off
          never: ['\d{3}-\d{4}']        # regular expressions the reply must not match
      - id: follow-up
        turns:                          # the questions of one call, in order
          - {audio: audio/q1.wav, expect: {source: policy#2.1}}
          - {audio: audio/q2.wav, expect: {says: ["seven days"]}}

`channel` is the caller's line, as in the protocol's `start`: `encoding` "pcm16" (default) or
"mulaw", `sample_rate` in Hz (default 16000 for pcm16, 8000 for mulaw). A call has one format,
so `channel` belongs to the suite or to a case, not to a turn. Each question's audio is decoded
and resampled to the channel's rate and sent in its encoding, as by
`voicedesk call --encoding mulaw --rate 8000`.

`load_suite` checks the whole file before anything runs and reports every problem it finds,
each naming the file and the case (by id, or by position when the id is missing).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voice.channels.codecs import AudioFormat, CodecError

DEFAULT_CHANNEL = AudioFormat("pcm16", 16_000)
"""How a case calls when the suite does not say: PCM16 at 16 kHz."""

_SUITE_KEYS = frozenset({"kb", "channel", "cases"})
_CASE_KEYS = frozenset({"id", "audio", "text", "expect", "turns", "channel"})
_TURN_KEYS = frozenset({"audio", "text", "expect"})
_EXPECT_KEYS = frozenset({"source", "says", "handoff", "never"})
_CHANNEL_KEYS = frozenset({"encoding", "sample_rate"})


class SuiteError(ValueError):
    """A suite file that cannot be run; `problems` lists every one found, each naming the file
    and the case."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Expect:
    """What an answer must do; an empty Expect only asks for a reply."""

    source: str | None = None
    says: tuple[str, ...] = ()
    handoff: bool | None = None
    """None: not checked."""
    never: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True)
class Question:
    """One recorded question of a case."""

    audio: Path
    text: str | None = None
    """The reference transcript, written by a person."""
    expect: Expect = Expect()


@dataclass(frozen=True)
class Case:
    """One call of a suite: one or more questions, asked in order."""

    id: str
    questions: tuple[Question, ...]
    channel: AudioFormat = DEFAULT_CHANNEL
    multi_turn: bool = False
    """Written with `turns:` (reported turn by turn)."""


@dataclass(frozen=True)
class Suite:
    path: Path
    cases: tuple[Case, ...]
    kb: Path | None = None
    """The KB directory an in-process server answers from; None: the server's own."""


def load_suite(path: Path) -> Suite:
    """Read and check a suite file.

    Raises:
        SuiteError: every problem found (unreadable file, unknown keys, wrong types, missing or
            duplicate ids, missing audio files, bad regular expressions, bad channels).
    """
    problems: list[str] = []
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise SuiteError([f"{path}: cannot read the suite: {err}"]) from err
    if not isinstance(document, dict):
        raise SuiteError([f"{path}: a suite is a mapping with a 'cases' list"])
    where, base = str(path), path.parent
    _unknown(document, _SUITE_KEYS, where, problems)
    kb = None
    if "kb" in document:
        if not isinstance(document["kb"], str):
            problems.append(f"{where}: 'kb' must be a directory path (a string)")
        elif not (base / document["kb"]).is_dir():
            problems.append(f"{where}: kb directory {base / document['kb']} not found")
        else:
            kb = base / document["kb"]
    channel = _channel(document.get("channel"), where, problems)
    raw_cases = document.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        problems.append(f"{where}: 'cases' must be a non-empty list")
        raw_cases = []
    seen: dict[str, int] = {}
    cases = [
        _case(raw, n, base, channel, where, seen, problems) for n, raw in enumerate(raw_cases, 1)
    ]
    if problems:
        raise SuiteError(problems)
    return Suite(path, tuple(case for case in cases if case is not None), kb)


def _unknown(raw: dict[Any, Any], known: frozenset[str], where: str, problems: list[str]) -> None:
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        problems.append(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )


def _channel(raw: Any, where: str, problems: list[str]) -> AudioFormat:
    if raw is None:
        return DEFAULT_CHANNEL
    if not isinstance(raw, dict):
        problems.append(f"{where}: 'channel' must be a mapping: {{encoding, sample_rate}}")
        return DEFAULT_CHANNEL
    _unknown(raw, _CHANNEL_KEYS, f"{where}: channel", problems)
    encoding = raw.get("encoding", "pcm16")
    rate = raw.get("sample_rate", 8000 if encoding == "mulaw" else 16_000)
    try:
        return AudioFormat.parse(encoding, rate)
    except CodecError as err:
        problems.append(f"{where}: channel: {err}")
        return DEFAULT_CHANNEL


def _case(
    raw: Any,
    index: int,
    base: Path,
    channel: AudioFormat,
    file: str,
    seen: dict[str, int],
    problems: list[str],
) -> Case | None:
    where = f"{file}: case #{index}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: a case must be a mapping")
        return None
    case_id = raw.get("id")
    if case_id is None:
        problems.append(f"{where}: missing 'id'")
    elif not isinstance(case_id, str) or not case_id.strip():
        problems.append(f"{where}: 'id' must be a non-empty string, not {case_id!r}")
    else:
        where = f"{file}: case {case_id}"
        if case_id in seen:
            problems.append(f"{where}: duplicate id (case #{seen[case_id]} has it too)")
        seen.setdefault(case_id, index)
    _unknown(raw, _CASE_KEYS, where, problems)
    if "channel" in raw:
        channel = _channel(raw["channel"], where, problems)
    if "turns" not in raw:
        question = _question(raw, base, where, problems)
        return Case(str(case_id), (question,), channel) if question else None
    if _TURN_KEYS & raw.keys():
        problems.append(f"{where}: give either 'turns' or 'audio'/'text'/'expect', not both")
    turns = raw["turns"]
    if not isinstance(turns, list) or not turns:
        problems.append(f"{where}: 'turns' must be a non-empty list")
        return None
    questions = []
    for number, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            problems.append(f"{where}, turn {number}: a turn must be a mapping")
            continue
        _unknown(turn, _TURN_KEYS, f"{where}, turn {number}", problems)
        questions.append(_question(turn, base, f"{where}, turn {number}", problems))
    return Case(str(case_id), tuple(q for q in questions if q), channel, multi_turn=True)


def _question(raw: dict[str, Any], base: Path, where: str, problems: list[str]) -> Question | None:
    audio = raw.get("audio")
    path = None
    if audio is None:
        problems.append(f"{where}: missing 'audio'")
    elif not isinstance(audio, str):
        problems.append(f"{where}: 'audio' must be a file path (a string)")
    elif not (base / audio).is_file():
        problems.append(f"{where}: audio file {base / audio} not found")
    else:
        path = base / audio
    text = raw.get("text")
    if text is not None and not (isinstance(text, str) and text.strip()):
        problems.append(f"{where}: 'text' must be a non-empty string")
        text = None
    expect = _expect(raw.get("expect", {}), where, problems)
    return Question(path, text, expect) if path is not None else None


def parse_expect(raw: Any, where: str = "expect") -> Expect:
    """An `expect` mapping as a suite holds it (for text lists and typed checks).

    Raises:
        SuiteError: the mapping is malformed.
    """
    problems: list[str] = []
    expect = _expect(raw, where, problems)
    if problems:
        raise SuiteError(problems)
    return expect


def _expect(raw: Any, where: str, problems: list[str]) -> Expect:
    if not isinstance(raw, dict):
        problems.append(f"{where}: 'expect' must be a mapping")
        return Expect()
    _unknown(raw, _EXPECT_KEYS, f"{where}: expect", problems)
    source = raw.get("source")
    if source is not None and not isinstance(source, str):
        problems.append(f"{where}: expect.source must be a string (a passage or FAQ id)")
        source = None
    handoff = raw.get("handoff")
    if handoff is not None and not isinstance(handoff, bool):
        problems.append(f"{where}: expect.handoff must be true or false, not {handoff!r}")
        handoff = None
    says = _strings(raw.get("says", []), "says", where, problems)
    never = []
    for pattern in _strings(raw.get("never", []), "never", where, problems):
        try:
            never.append(re.compile(pattern))
        except re.error as err:
            problems.append(f"{where}: expect.never: bad regular expression {pattern!r}: {err}")
    return Expect(source, says, handoff, tuple(never))


def _strings(raw: Any, key: str, where: str, problems: list[str]) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return tuple(raw)
    problems.append(f"{where}: expect.{key} must be a string or a list of strings")
    return ()
