"""The CLI actions and the prompt loader."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import prompts
from agent.commands import ask, kb_check
from agent.kb import demo_kb_dir
from agent.types import AgentSettings

EXTRACTIVE = AgentSettings(backend="extractive")


def test_kb_check_lists_passages_and_faq_ids() -> None:
    out = io.StringIO()
    assert kb_check(demo_kb_dir(), out) == 0
    lines = out.getvalue().splitlines()
    assert any(
        line.startswith("troubleshooting#4.2") and "Bulb flashes red" in line for line in lines
    )
    assert any(line.startswith("faq#return-window") for line in lines)
    assert lines[-1].startswith("ok: ") and "10 FAQ entries" in lines[-1]


def test_kb_check_names_the_broken_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "manual.md").write_text("# T\n## 1 One\ntext\n## 1 One again\nmore\n")
    out = io.StringIO()
    assert kb_check(tmp_path, out) == 1
    assert (
        out.getvalue() == f"error: {tmp_path / 'manual.md'}:4: duplicate id 'manual#1' "
        "(first at manual.md:2)\n"
    )


def test_ask_prints_the_answer_and_its_sources() -> None:
    out = io.StringIO()
    assert ask("my blub is flashing red", EXTRACTIVE, out) == 0
    text = out.getvalue()
    assert "2.4 GHz" in text
    assert "sources: troubleshooting#4.2\n" in text
    assert "backend: extractive\n" in text


def test_ask_reports_a_handoff(tmp_path: Path) -> None:
    out = io.StringIO()
    assert ask("whats the weather like", EXTRACTIVE, out) == 0
    assert "rules: out_of_scope\nhandoff: yes\n" in out.getvalue()


def test_ask_fails_on_a_broken_kb(tmp_path: Path) -> None:
    out = io.StringIO()
    assert ask("anything", AgentSettings(kb_dir=tmp_path, backend="extractive"), out) == 1
    assert out.getvalue().startswith("error: ")


def test_the_guardrail_prompt_states_the_rules() -> None:
    text = prompts.load("guardrail")
    for phrase in (
        "HANDOFF",
        "State a price or an amount of money only exactly as a passage states it",
        "This is general information, not professional advice.",
        "I can only help with questions about our products and services.",
        "[troubleshooting#4.2]",
        "phone number",
    ):
        assert phrase in text


@pytest.mark.parametrize("name", ["../pyproject", "Guardrail.md", ""])
def test_prompt_names_are_plain(name: str) -> None:
    with pytest.raises(ValueError):
        prompts.load(name)


def test_a_missing_prompt_is_an_error() -> None:
    with pytest.raises(FileNotFoundError):
        prompts.load("nope")
