"""The agent's command-line actions; the CLI parses arguments and calls these."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TextIO

from agent.health import check_ollama_sync
from agent.kb import KbError, demo_kb_dir, load_kb
from agent.selection import explain
from agent.types import AgentSettings, gather


def kb_check(kb_dir: Path, out: TextIO) -> int:
    """Validate a KB and list its entries.

    Returns:
        0 when the KB loads; 1 with `error: file:line: problem` when it does not.
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
    words = kb.vocabulary
    if words.names or words.heard_as or words.synonyms:
        print(
            f"vocabulary.yaml: {len(words.names)} names, {len(words.heard_as)} heard_as, "
            f"{len(words.synonyms)} synonyms",
            file=out,
        )
    print(f"ok: {len(kb.passages)} passages, {len(kb.faqs)} FAQ entries in {kb_dir}", file=out)
    return 0


def ask(question: str, settings: AgentSettings, out: TextIO) -> int:
    """Answer one question with the configured backend (as the server would) and print the
    answer, its sources and the rules that fired.

    Returns:
        0 when answered (a handoff is an answer too); 1 when the KB does not load.
    """
    from agent.selection import build_agent

    try:
        agent, _ = build_agent(settings)
    except KbError as err:
        print(f"error: {err}", file=out)
        return 1
    text, end = asyncio.run(gather(agent.answer(question, ())))
    print(text, file=out)
    print(f"sources: {', '.join(end.sources) or '-'}", file=out)
    print(f"backend: {end.backend}", file=out)
    if end.rules:
        print(f"rules: {', '.join(end.rules)}", file=out)
    if end.handoff:
        print("handoff: yes", file=out)
    return 0


def doctor(settings: AgentSettings, out: TextIO) -> int:
    """Say whether the KB loads, whether Ollama answers and has the model, and which backend
    `auto` (and the configured backend, when it is not `auto`) picks, and why.

    Blocks for up to `connect_timeout_s` while it checks Ollama.

    Returns:
        0 when the server can start (Ollama being down is not an error: it falls back);
        1 when the KB does not load.
    """
    kb_dir = settings.kb_dir or demo_kb_dir()
    try:
        kb = load_kb(kb_dir)
    except KbError as err:
        print(f"knowledge base: error: {err}", file=out)
        return 1
    which = "" if settings.kb_dir else " (the bundled demo KB)"
    size = f"{len(kb.passages)} passages, {len(kb.faqs)} FAQ entries"
    print(f"knowledge base: {kb_dir}{which}: {size}", file=out)
    status = check_ollama_sync(settings)
    if status.models is None:
        print(f"ollama: {status.reason}", file=out)
    else:
        listed = ", ".join(status.models) or "none"
        print(f"ollama: {settings.ollama_url} answers; models pulled: {listed}", file=out)
        pulled = "pulled" if status.ready else f"not pulled (run: ollama pull {settings.model})"
        print(f"model {settings.model}: {pulled}", file=out)
    auto = dataclasses.replace(settings, backend="auto")
    print(f"backend auto picks {explain(auto, status)}", file=out)
    if settings.backend != "auto":
        print(f"backend {settings.backend} (configured): {explain(settings, status)}", file=out)
    return 0
