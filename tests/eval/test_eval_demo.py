"""The demo evaluation suite in eval/demo/: complete, its audio present, and right about the agent.

The last test asks every case's typed text of the agent (extractive, demo KB), so a failure
there means the suite's expectations are wrong, or the agent's answers changed, independently
of speech recognition. Fix the question in eval/demo/questions.yaml and run
`python eval/make_audio.py`, or fix the KB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import soundfile
import yaml

from agent.kb import demo_kb_dir, load_kb
from agent.selection import build_agent
from agent.types import AgentSettings, AnswerEnd, Exchange, gather
from voice.clients.client import Turn
from voice.eval.run import unmet
from voice.eval.suite import parse_expect

DEMO = Path(__file__).resolve().parents[2] / "eval" / "demo"
SUITES = {"clean": 16_000, "pace": 16_000, "telephone": 8_000, "noisy": 16_000}
"""Each committed suite, with the sample rate of its audio (Hz)."""
QUESTIONS = yaml.safe_load((DEMO / "questions.yaml").read_text(encoding="utf-8"))["cases"]


def suite(name: str) -> list[dict[str, Any]]:
    return yaml.safe_load((DEMO / f"{name}.yaml").read_text(encoding="utf-8"))["cases"]


def turns(case: dict[str, Any]) -> list[dict[str, Any]]:
    return case.get("turns", [case])


@pytest.mark.parametrize("name", SUITES)
def test_each_suite_holds_the_cases_the_benchmark_needs(name):
    cases = suite(name)
    ids = [case["id"] for case in cases]
    assert len(ids) == len(set(ids))
    assert len(cases) >= 30
    handed_off = [c for c in cases if any(t.get("expect", {}).get("handoff") for t in turns(c))]
    assert len(handed_off) >= 5
    injections = [c for c in cases if c["id"].startswith("inject-")]
    assert len(injections) >= 3
    assert all(t.get("expect", {}).get("never") for c in injections for t in turns(c))
    assert len([c for c in cases if len(c.get("turns", ())) >= 2]) >= 3


@pytest.mark.parametrize(("name", "rate"), SUITES.items())
def test_every_audio_file_is_there_as_mono_pcm16(name, rate):
    for case in suite(name):
        for turn in turns(case):
            info = soundfile.info(DEMO / turn["audio"])
            assert (info.samplerate, info.channels, info.subtype) == (rate, 1, "PCM_16"), turn
            assert 1.0 < info.duration < 10.0, turn


def test_expected_sources_are_passages_of_the_demo_kb():
    kb = load_kb(demo_kb_dir())
    known = {entry.id for entry in (*kb.passages, *kb.faqs)}
    for name in SUITES:
        for case in suite(name):
            for turn in turns(case):
                source = turn.get("expect", {}).get("source")
                assert source is None or source in known, (case["id"], source)


@pytest.mark.parametrize("name", SUITES)
def test_suites_are_up_to_date_with_the_question_list(name):
    """Every suite holds each question of questions.yaml once, with its text and expectations."""
    made = {case["id"].split("@")[0]: case for case in suite(name)}
    assert list(made) == [question["id"] for question in QUESTIONS]
    for question in QUESTIONS:
        wanted = [(t["text"], t.get("expect", {})) for t in turns(question)]
        assert [(t["text"], t.get("expect", {})) for t in turns(made[question["id"]])] == wanted


@pytest.fixture(scope="module")
def agent():
    return build_agent(AgentSettings(backend="extractive"))[0]


@pytest.mark.parametrize("question", QUESTIONS, ids=[q["id"] for q in QUESTIONS])
async def test_the_typed_question_gets_the_expected_answer(agent, question):
    memory: list[Exchange] = []
    for turn in turns(question):
        reply, end = await gather(agent.answer(turn["text"], tuple(memory)))
        assert unmet_typed(turn.get("expect", {}), reply, end) == [], (turn["text"], reply)
        memory.append(Exchange(turn["text"], reply))


def unmet_typed(expect: dict[str, Any], reply: str, end: AnswerEnd) -> list[str]:
    """The expectations the reply misses, as `voicedesk eval` scores them (docs/eval.md)."""
    turn = Turn(turn=0, reply=reply, sources=list(end.sources), handoff=end.handoff)
    return unmet(parse_expect(expect), turn)
