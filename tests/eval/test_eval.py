"""voice/eval/run.py and voice/eval/report.py on hand-made results: scoring, the summary, the
JSON and HTML reports, the exit code. No sockets, no models."""

from __future__ import annotations

import io
import json
import re
import socket
import wave
from pathlib import Path

import numpy as np
import pytest

from voice.channels.codecs import AudioFormat, mulaw_encode
from voice.cli import main
from voice.clients.client import Turn
from voice.eval.report import (
    audio_data_uri,
    case_json,
    html_report,
    print_table,
    progress_line,
    results_json,
    wav_data_uri,
)
from voice.eval.run import (
    CaseResult,
    exit_code,
    handoff_scores,
    percentile,
    score_turn,
    summarize,
    unmet,
)
from voice.eval.suite import Case, Expect, Question

BULB = Expect(
    source="troubleshooting#4.2",
    says=("2.4",),
    handoff=False,
    never=(re.compile(r"\d{3}-\d{4}"),),
)
PCM16 = AudioFormat("pcm16", 16000)
NOTHING = Expect()
BULB_REPLY = "Make sure the bulb is on the same 2.4 GHz network as your phone."


def heard(reply: str = BULB_REPLY, **fields) -> Turn:
    fields.setdefault("sources", ["troubleshooting#4.2"])
    fields.setdefault("timings_ms", {"asr": 100, "first_text": 120, "first_audio": 300})
    return Turn(turn=1, transcript=fields.pop("transcript", "my bulb flashes red"), reply=reply,
                **fields)  # fmt: skip


def case_result(case_id: str, *turns: tuple[Question, Turn | None], channel=PCM16) -> CaseResult:
    case = Case(case_id, tuple(q for q, _ in turns), channel, multi_turn=len(turns) > 1)
    pcm = np.zeros(1600, np.int16)
    return CaseResult(case, [score_turn(question, turn, pcm) for question, turn in turns])


def question(expect: Expect = NOTHING, text: str | None = None) -> Question:
    return Question(Path("q.wav"), text, expect)


# ----------------------------------------------------------------------------- scoring


def test_a_reply_that_meets_every_expectation_passes():
    assert unmet(BULB, heard()) == []
    assert unmet(BULB, heard(BULB_REPLY.upper())) == []  # says ignores case
    assert unmet(Expect(), heard("Anything at all.")) == []


@pytest.mark.parametrize(
    ("turn", "why"),
    [
        (heard(sources=["faq#warranty-length"]),
         ["source troubleshooting#4.2 not among [faq#warranty-length]"]),
        (heard(sources=[]), ["source troubleshooting#4.2 not among []"]),
        (heard("Make sure the bulb is on the network."), ["does not say '2.4'"]),
        (heard(handoff=True), ["handed off"]),
        (heard(BULB_REPLY + " Or call 555-1234."), ["says '555-1234' (never '\\\\d{3}-\\\\d{4}')"]),
        (heard(""), ["no reply"]),
        (heard("   "), ["no reply"]),
        (Turn(turn=1, ignored=True), ["no reply (the question was ignored)"]),
        (None, ["no reply"]),
    ],
)  # fmt: skip
def test_each_reason_a_reply_fails(turn, why):
    assert unmet(BULB, turn) == why


def test_a_handoff_that_should_have_happened():
    assert unmet(Expect(handoff=True), heard(handoff=False)) == ["not handed off"]
    assert unmet(Expect(handoff=True), heard(handoff=True)) == []


def test_several_reasons_are_all_given():
    why = unmet(BULB, heard("Call 555-1234.", sources=[], handoff=True))
    assert len(why) == 4


def test_a_case_passes_when_every_turn_does_and_names_the_turns_that_do_not():
    passing = case_result("a", (question(BULB), heard()))
    assert passing.passed and passing.why == []
    failing = case_result(
        "b", (question(BULB), heard()), (question(Expect(says=("seven days",))), heard())
    )
    assert not failing.passed
    assert failing.why == ["turn 2: does not say 'seven days'"]
    cut = CaseResult(failing.case, failing.turns[:1], error="no reply within 60 s")
    assert not cut.passed and cut.why == ["no reply within 60 s"]
    unasked = CaseResult(failing.case, failing.turns[:1])
    assert not unasked.passed  # a turn never asked is not a pass


# ----------------------------------------------------------------------------- summary


def test_percentiles_interpolate_and_round():
    assert percentile([100, 200, 300, 400], 50) == 250
    assert percentile([100, 200, 300, 400], 95) == 385
    assert percentile([7], 95) == 7
    assert percentile([], 50) is None


def test_handoff_precision_and_recall():
    pairs = [(True, True), (True, False), (False, True), (False, False), (True, True)]
    precision, recall = handoff_scores(pairs)
    assert precision == pytest.approx(2 / 3) and recall == pytest.approx(2 / 3)
    assert handoff_scores([(False, False)]) == (None, None)
    assert handoff_scores([(True, False)]) == (None, 0.0)


def sample_results() -> list[CaseResult]:
    weather = Expect(handoff=True)
    return [
        case_result("bulb", (question(BULB, "my smart bulb flashes red"), heard())),
        case_result(
            "two-turns",
            (
                question(Expect(handoff=False), "how long is the warranty"),
                heard(
                    "One year.",
                    transcript="how long is the warranty",
                    timings_ms={"asr": 300, "first_text": 320, "first_audio": 900},
                ),
            ),
            (
                question(weather, "what will the weather be"),
                heard(
                    "Transferring you.",
                    transcript="what will the weather bee",
                    handoff=True,
                    timings_ms={"asr": 200, "first_text": 210, "first_audio": 500},
                ),
            ),
        ),  # fmt: skip
        case_result("missed-handoff", (question(weather), heard("Sunny, I think."))),
        case_result("false-alarm", (question(Expect(handoff=False)), heard("Bye", handoff=True))),
        case_result("untimed", (question(Expect()), heard("Sure.", timings_ms={"asr": None}))),
    ]


def test_the_summary():
    summary = summarize(sample_results())
    assert (summary.cases, summary.passed, summary.turns) == (5, 3, 6)
    assert summary.pass_rate == pytest.approx(3 / 5)
    # "my smart bulb flashes red" vs "my bulb flashes red": 1 deletion; "bee": 1 substitution
    assert summary.wer_turns == 3 and summary.wer == pytest.approx(2 / 15)
    # stated: bulb F/F, warranty F/F, weather T/T, missed T/F, false alarm F/T
    assert summary.handoff_turns == 5
    assert summary.handoff_precision == pytest.approx(1 / 2)
    assert summary.handoff_recall == pytest.approx(1 / 2)
    assert summary.percentiles_ms["first_audio"] == (300, 820)
    assert summary.percentiles_ms["asr"][0] == 100
    assert summary.percentiles_ms["perceived"] == (None, None)
    data = summary.as_json()
    for key in ("pass_rate", "wer", "handoff_precision", "handoff_recall"):
        assert key in data
    assert data["first_audio_p50_ms"] == 300 and data["first_audio_p95_ms"] == 820
    assert data["perceived_p50_ms"] is None


@pytest.mark.parametrize(("min_pass", "code"), [(1.0, 1), (0.61, 1), (0.6, 0), (0.5, 0), (0.0, 0)])
def test_exit_code_against_min_pass(min_pass, code):
    assert exit_code(summarize(sample_results()), min_pass) == code


def test_exit_code_when_everything_passes_or_nothing_ran():
    assert exit_code(summarize(sample_results()[:1])) == 0
    assert exit_code(summarize([]), 0.0) == 1


# ----------------------------------------------------------------------------- reports


def test_case_json_of_a_single_turn_case():
    data = case_json(sample_results()[0])
    assert data == {
        "id": "bulb",
        "passed": True,
        "why": [],
        "error": None,
        "text": "my smart bulb flashes red",
        "transcript": "my bulb flashes red",
        "reply": BULB_REPLY,
        "sources": ["troubleshooting#4.2"],
        "handoff": False,
        "wer": pytest.approx(1 / 5),
        "timings_ms": {"asr": 100, "first_text": 120, "first_audio": 300},
    }


def test_case_json_of_a_multi_turn_case_joins_its_turns():
    data = case_json(sample_results()[1])
    assert data["passed"] is True
    assert data["transcript"] == "how long is the warranty\nwhat will the weather bee"
    assert data["reply"] == "One year.\nTransferring you."
    assert data["sources"] == ["troubleshooting#4.2"]
    assert data["handoff"] is True
    assert data["wer"] == pytest.approx(1 / 10)
    assert data["timings_ms"] == {"asr": 300, "first_text": 320, "first_audio": 900}
    assert [turn["turn"] for turn in data["turns"]] == [1, 2]
    assert data["turns"][1]["wer"] == pytest.approx(1 / 5)
    assert set(data["turns"][0]) >= {"passed", "why", "transcript", "reply", "sources", "handoff"}


def test_a_failed_call_is_in_the_json():
    failed = CaseResult(Case("gone", (question(BULB),)), [], error="the call failed: refused")
    data = case_json(failed)
    assert data["passed"] is False and data["why"] == ["the call failed: refused"]
    assert data["handoff"] is None and data["transcript"] == ""
    json.dumps(results_json([failed], summarize([failed])))


def test_the_table_and_the_progress_line():
    results = sample_results()
    out = io.StringIO()
    print_table(results, summarize(results), out)
    table = out.getvalue()
    assert "bulb" in table and "  turn 2" in table
    assert "missed-handoff" in table and "not handed off" in table
    assert "passed     3/5 cases (60.0%)" in table
    assert "perceived" not in table  # only measured with --realtime
    assert progress_line(2, 5, results[0]).startswith("[2/5] ████████░░░░")
    assert progress_line(3, 5, results[2]).endswith("missed-handoff ✗ not handed off")


def test_the_html_report_has_the_players_the_marked_errors_and_why():
    results = sample_results()
    mulaw = AudioFormat("mulaw", 8000)
    reply = heard(
        "A <b>bold</b> reply & more", audio=bytearray(mulaw_encode(np.zeros(800, np.int16)))
    )
    results.append(case_result("tel <1>", (question(BULB, "said this"), reply), channel=mulaw))
    page = html_report(results, summarize(results), "demo & co")
    assert page.startswith("<!DOCTYPE html>") and "<title>demo &amp; co</title>" in page
    assert page.count("<audio controls") == 7 + 1  # 7 questions, 1 reply with audio
    assert page.count('src="data:audio/mpeg;base64,') == 8  # MP3: a ninth of a WAV
    assert '<span class="del" title="not heard">smart</span>' in page
    assert '<span class="sub" title="said: be">bee</span>' in page
    assert "A &lt;b&gt;bold&lt;/b&gt; reply &amp; more" in page
    assert "<b>bold</b>" not in page
    assert 'id="tel &lt;1&gt;"' in page and "mulaw 8000 Hz" in page
    assert "not handed off" in page and 'class="fail"' in page


def test_audio_is_mp3_where_mp3_has_the_rate_else_wav():
    import base64

    import soundfile as sf

    tone = (np.sin(np.arange(8000) * 0.3) * 8000).astype(np.int16)
    mp3 = audio_data_uri(tone, 8000)
    assert mp3.startswith("data:audio/mpeg;base64,")
    back, rate = sf.read(io.BytesIO(base64.b64decode(mp3.split(",", 1)[1])), dtype="int16")
    assert rate == 8000 and abs(len(back) - len(tone)) < 0.1 * 8000
    assert audio_data_uri(tone, 96000).startswith("data:audio/wav;base64,")  # no such MP3
    assert audio_data_uri(tone[:0], 8000).startswith("data:audio/wav;base64,")


def test_wav_data_uri_is_a_playable_wav():
    import base64

    uri = wav_data_uri(np.arange(8, dtype=np.int16), 8000)
    data = base64.b64decode(uri.split(",", 1)[1])
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) == 44 + 16


# ----------------------------------------------------------------------------- command line


def test_a_bad_suite_exits_2_before_anything_runs(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text("cases:\n  - {id: a, audio: nope.wav}\n  - {audio: nope.wav}\n")
    assert main(["eval", str(suite), "--llm", "extractive"]) == 2
    err = capsys.readouterr().err
    assert "the suite cannot run (3 problems)" in err
    assert f"{suite}: case a: audio file" in err and f"{suite}: case #2: missing 'id'" in err


def test_min_pass_must_be_a_fraction(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "suite.yaml"), "--min-pass", "95"]) == 2
    assert "--min-pass" in capsys.readouterr().err


def test_a_server_that_is_not_there_stops_the_run_at_once(tmp_path, capsys, logging_left_as_it_was):
    """It used to call every case, each failing with "cannot connect", and print them all."""
    with wave.open(str(tmp_path / "q.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(3200))
    cases = "".join(f"  - {{id: q{n}, audio: q.wav}}\n" for n in range(5))
    (tmp_path / "suite.yaml").write_text(f"cases:\n{cases}", encoding="utf-8")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{probe.getsockname()[1]}/call"
    page = tmp_path / "out.html"
    code = main(["eval", str(tmp_path / "suite.yaml"), "--url", url, "--html", str(page)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == "", "no case was run"
    assert err.splitlines() == [f"voicedesk eval: cannot reach {url}: Connection refused"]
    assert not page.exists()
