"""voice/eval/suite.py: reading a suite file, and every kind of problem reported up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice.channels.codecs import AudioFormat
from voice.eval.suite import DEFAULT_CHANNEL, SuiteError, load_suite


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "audio").mkdir()
    for name in ("q1.wav", "q2.wav", "q3.wav"):
        (tmp_path / "audio" / name).write_bytes(b"RIFF")  # only existence is checked up front
    (tmp_path / "kb").mkdir()
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(folder: Path, text: str) -> list[str]:
    with pytest.raises(SuiteError) as caught:
        load_suite(write(folder, text))
    return caught.value.problems


def test_a_good_suite(folder):
    suite = load_suite(
        write(
            folder,
            r"""
kb: ./kb
cases:
  - id: bulb-red
    audio: audio/q1.wav
    text: My smart bulb keeps flashing red, what should I do?
    expect:
      source: troubleshooting#4.2
      says: ["2.4"]
      handoff: false
      never: ['\d{3}-\d{4}']
  - id: follow-up
    channel: {encoding: mulaw}
    turns:
      - {audio: audio/q2.wav, expect: {source: policy#2.1}}
      - {audio: audio/q3.wav, expect: {says: seven days}}
  - id: just-timed
    audio: audio/q1.wav
""",
        )
    )
    assert suite.kb == folder / "kb"
    first, follow_up, timed = suite.cases
    assert first.id == "bulb-red" and not first.multi_turn
    assert first.channel == DEFAULT_CHANNEL
    [question] = first.questions
    assert question.audio == folder / "audio" / "q1.wav"
    assert question.text == "My smart bulb keeps flashing red, what should I do?"
    assert question.expect.source == "troubleshooting#4.2"
    assert question.expect.says == ("2.4",)
    assert question.expect.handoff is False
    assert question.expect.never[0].search("call 555-1234")
    assert follow_up.multi_turn and len(follow_up.questions) == 2
    assert follow_up.channel == AudioFormat("mulaw", 8000)
    assert follow_up.questions[1].expect.says == ("seven days",)
    assert timed.questions[0].expect.handoff is None and timed.questions[0].text is None


def test_the_suite_channel_applies_to_every_case_unless_a_case_has_its_own(folder):
    suite = load_suite(
        write(
            folder,
            """
channel: {encoding: mulaw, sample_rate: 8000}
cases:
  - {id: a, audio: audio/q1.wav}
  - {id: b, audio: audio/q1.wav, channel: {encoding: pcm16, sample_rate: 24000}}
  - {id: c, audio: audio/q1.wav, channel: {encoding: pcm16}}
""",
        )
    )
    assert [case.channel for case in suite.cases] == [
        AudioFormat("mulaw", 8000),
        AudioFormat("pcm16", 24000),
        AudioFormat("pcm16", 16000),
    ]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("{id: a, audio: audio/nope.wav}", "case a: audio file {folder}/audio/nope.wav not found"),
        ("{id: a}", "case a: missing 'audio'"),
        ("{id: a, audio: [x]}", "case a: 'audio' must be a file path"),
        ("{audio: audio/q1.wav}", "case #1: missing 'id'"),
        ("{id: '', audio: audio/q1.wav}", "case #1: 'id' must be a non-empty string"),
        ("{id: 7, audio: audio/q1.wav}", "case #1: 'id' must be a non-empty string, not 7"),
        ("{Q, txt: hi}", "case a: unknown key txt"),
        ("{Q, text: 5}", "case a: 'text' must be a non-empty string"),
        ("{Q, expect: [x]}", "case a: 'expect' must be a mapping"),
        ("{Q, expect: {sources: x}}", "case a: expect: unknown key sources"),
        ("{Q, expect: {source: 4.2}}", "case a: expect.source must be"),
        ("{Q, expect: {says: [2.4]}}", "case a: expect.says must be"),
        ("{Q, expect: {handoff: 'no'}}", "case a: expect.handoff must be"),
        ("{Q, expect: {never: ['(']}}", "case a: expect.never: bad regular"),
        ("{Q, channel: {encoding: opus}}", "case a: channel: Unsupported"),
        ("{Q, channel: {encoding: mulaw, sample_rate: 16000}}",
         "case a: channel: mulaw audio must be sampled at 8000 Hz"),
        ("{Q, channel: {rate: 8000}}", "case a: channel: unknown key rate"),
        ("{id: a, turns: []}", "case a: 'turns' must be a non-empty list"),
        ("{id: a, turns: [hello]}", "case a, turn 1: a turn must be a mapping"),
        ("{id: a, turns: [{audio: audio/q1.wav}, {text: hi}]}", "case a, turn 2: missing 'audio'"),
        ("{id: a, turns: [{audio: audio/q1.wav, id: x}]}", "case a, turn 1: unknown key id"),
        ("{Q, turns: [{audio: audio/q1.wav}]}",
         "case a: give either 'turns' or 'audio'/'text'/'expect', not both"),
        ("just a string", "case #1: a case must be a mapping"),
    ],
)  # fmt: skip
def test_each_problem_names_the_file_and_the_case(folder, case, expected):
    found = problems(folder, f"cases:\n  - {case.replace('Q', 'id: a, audio: audio/q1.wav')}\n")
    suite = folder / "suite.yaml"
    assert any(p.startswith(f"{suite}: {expected.format(folder=folder)}") for p in found), found


def test_a_duplicate_id_is_reported(folder):
    found = problems(
        folder, "cases:\n  - {id: a, audio: audio/q1.wav}\n  - {id: a, audio: audio/q2.wav}\n"
    )
    assert found == [f"{folder / 'suite.yaml'}: case a: duplicate id (case #1 has it too)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cases: [", "cannot read the suite"),
        ("- a list", "a suite is a mapping with a 'cases' list"),
        ("cases: []", "'cases' must be a non-empty list"),
        ("kb: ./nokb\ncases: [{id: a, audio: audio/q1.wav}]", "kb directory"),
        ("kb: 3\ncases: [{id: a, audio: audio/q1.wav}]", "'kb' must be a directory path"),
        ("colour: red\ncases: [{id: a, audio: audio/q1.wav}]", "unknown key colour"),
        ("channel: mulaw\ncases: [{id: a, audio: audio/q1.wav}]", "'channel' must be a mapping"),
    ],
)
def test_problems_of_the_file_itself(folder, text, expected):
    [problem] = problems(folder, text)
    assert problem.startswith(f"{folder / 'suite.yaml'}: ") and expected in problem


def test_a_missing_file(tmp_path):
    with pytest.raises(SuiteError, match="cannot read the suite"):
        load_suite(tmp_path / "nope.yaml")


def test_every_problem_is_collected_before_giving_up(folder):
    found = problems(
        folder,
        """
cases:
  - {id: a, audio: audio/nope.wav}
  - {id: b, audio: audio/q1.wav, expect: {never: ['[']}}
  - {audio: audio/q1.wav}
  - {id: b, audio: audio/q1.wav}
""",
    )
    assert [problem.split(": ")[1] for problem in found] == [
        "case a",
        "case b",
        "case #3",
        "case b",
    ]
