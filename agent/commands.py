"""The agent's command-line actions; the CLI parses arguments and calls these."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from agent.agent import KnowledgeAgent
from agent.kb import KbError, demo_kb_dir, load_kb
from agent.types import AgentSettings, AnswerEnd, AnswerText


def kb_check(kb_dir: Path, out: TextIO) -> int:
    """Validate a KB and list its entries.

    Returns:
        0 when the KB loads; 1 with ``error: file:line: problem`` when it does not.
    """
    try:
        kb = load_kb(kb_dir)
    except KbError as err:
        print(f"error: {err}", file=out)
        return 1
    for passage in kb.passages:
        print(f"{passage.id:<40} {passage.heading}", file=out)
    for faq in kb.faqs:
        print(f"{faq.id:<40} {faq.questions[0]}", file=out)
    print(f"ok: {len(kb.passages)} passages, {len(kb.faqs)} FAQ entries in {kb_dir}", file=out)
    return 0


def ask(question: str, kb_dir: Path | None, out: TextIO) -> int:
    """Answer one question with the extractive backend and print answer, sources and rules.

    Returns:
        0 when answered (a handoff is an answer too); 1 when the KB does not load.
    """
    settings = AgentSettings(kb_dir=kb_dir, backend="extractive")
    try:
        agent = KnowledgeAgent.from_settings(settings)
    except KbError as err:
        print(f"error: {err}", file=out)
        return 1
    text, end = asyncio.run(_answer(agent, question))
    print(text, file=out)
    print(f"sources: {', '.join(end.sources) or '-'}", file=out)
    print(f"backend: {end.backend}", file=out)
    if end.rules:
        print(f"rules: {', '.join(end.rules)}", file=out)
    if end.handoff:
        print("handoff: yes", file=out)
    return 0


async def _answer(agent: KnowledgeAgent, question: str) -> tuple[str, AnswerEnd]:
    parts: list[str] = []
    end = AnswerEnd()
    async for event in agent.answer(question, ()):
        if isinstance(event, AnswerText):
            parts.append(event.text)
        else:
            end = event
    return "".join(parts), end


__all__ = ["ask", "demo_kb_dir", "kb_check"]
