"""Answer quality on typed questions: every text list under eval/ asked of the agent directly.

Run: python bench/answers.py [eval/utility/questions.yaml ...] [--set answer_similarity=0.5]
     [--failures] [--sweep]

Each text list (`questions.yaml`: the cases of a suite with their `text`, docs/eval.md) is asked
of a KnowledgeAgent on its own KB with the extractive backend, turn by turn with the call's
memory, and scored as `voicedesk eval` scores a reply. Prints the pass rate per KB and overall,
the out-of-scope and adversarial cases passed, and the price answers missing their note.
`--sweep` tries a grid of the similarity thresholds over all the lists at once (calibration).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.agent import KnowledgeAgent  # noqa: E402
from agent.guardrails import about_price, amounts  # noqa: E402
from agent.kb import load_kb  # noqa: E402
from agent.speech import split_sentences  # noqa: E402
from agent.types import AgentSettings, AnswerEnd, Exchange, gather  # noqa: E402
from voice.clients.client import Turn  # noqa: E402
from voice.eval.run import unmet  # noqa: E402
from voice.eval.suite import parse_expect  # noqa: E402

EVAL = Path(__file__).resolve().parent.parent / "eval"


@dataclass
class Outcome:
    case: str
    kind: str
    """"answer", "price", "out" (out of scope, injection, a person)."""
    passed: bool
    why: list[str]
    reply: str
    unpriced: bool
    """It spoke what something costs without the price note."""


def kind_of(case: dict[str, Any]) -> str:
    expects = [t.get("expect", {}) for t in case.get("turns", [case])]
    if any(e.get("handoff") is not None and not e.get("source") for e in expects):
        return "out"
    if any("current price" in [s.lower() for s in e.get("says", [])] for e in expects):
        return "price"
    return "answer"


def unmet_typed(expect: dict[str, Any], reply: str, end: AnswerEnd) -> list[str]:
    """As `voicedesk eval` scores a reply (voice.eval.run.unmet), on typed text."""
    turn = Turn(turn=0, reply=reply, sources=list(end.sources), handoff=end.handoff)
    return unmet(parse_expect(expect), turn)


async def run_list(agent: KnowledgeAgent, cases: list[dict[str, Any]]) -> list[Outcome]:
    out = []
    for case in cases:
        memory: list[Exchange] = []
        why: list[str] = []
        replies = []
        unpriced = False
        for turn in case.get("turns", [case]):
            reply, end = await gather(agent.answer(turn["text"], tuple(memory)))
            why += unmet_typed(turn.get("expect", {}), reply, end)
            replies.append(reply)
            priced = any(amounts(s) and about_price(s) for s in split_sentences(reply))
            unpriced |= priced and agent.settings.price_note not in reply
            memory.append(Exchange(turn["text"], reply, end.rules, end.sources))
        out.append(Outcome(case["id"], kind_of(case), not why, why, " / ".join(replies), unpriced))
    return out


def load_list(path: Path) -> tuple[Path | None, list[dict[str, Any]]]:
    """The KB directory of a text list (None: the demo KB) and its cases."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    kb = path.parent / data["kb"] if "kb" in data else None
    return kb, data["cases"]


def agents(paths: list[Path], settings: AgentSettings) -> list[tuple[str, KnowledgeAgent, list]]:
    built = []
    for path in paths:
        kb_dir, cases = load_list(path)
        kb = load_kb(kb_dir) if kb_dir is not None else None
        agent = (
            KnowledgeAgent(settings, kb)
            if kb is not None
            else KnowledgeAgent.from_settings(settings)
        )
        built.append((path.parent.name, agent, cases))
    return built


def report(name: str, outcomes: list[Outcome], failures: bool) -> None:
    def rate(kind: str | None) -> str:
        chosen = [o for o in outcomes if kind is None or o.kind == kind]
        if not chosen:
            return "  -  "
        return f"{sum(o.passed for o in chosen)}/{len(chosen)}"

    unpriced = sum(o.unpriced for o in outcomes)
    print(
        f"{name:10} all {rate(None):7} answerable {rate('answer'):7} price {rate('price'):5} "
        f"out/adversarial {rate('out'):5} amounts without note {unpriced}"
    )
    if failures:
        for o in outcomes:
            if not o.passed:
                print(f"    {o.case}: {'; '.join(o.why)}\n        {o.reply[:220]}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("lists", nargs="*", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--failures", action="store_true")
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    paths = args.lists or sorted(EVAL.glob("*/questions.yaml"))
    settings = AgentSettings(backend="extractive")
    for item in args.set:
        field, value = item.split("=", 1)
        current = getattr(settings, field)
        settings = replace(
            settings, **{field: type(current)(value) if current is not None else value}
        )
    built = agents(paths, settings)
    if not args.sweep:
        total = []
        for name, agent, cases in built:
            outcomes = await run_list(agent, cases)
            report(name, outcomes, args.failures)
            total += outcomes
        report("all", total, False)
        return
    grid = itertools.product((0.34, 0.37, 0.4, 0.43, 0.45), (0.0, 0.02, 0.05))
    for answer, band in grid:
        unsure = answer - band
        worst = 1.0
        line = []
        for name, agent, cases in built:
            agent.settings = replace(
                agent.settings, answer_similarity=answer, unsure_similarity=unsure
            )
            outcomes = await run_list(agent, cases)
            share = sum(o.passed for o in outcomes) / len(outcomes)
            outs = [o for o in outcomes if o.kind == "out"]
            worst = min(worst, share)
            line.append(f"{name} {share:.2f} out {sum(o.passed for o in outs)}/{len(outs)}")
        print(f"answer {answer:.2f} unsure {unsure:.2f} worst {worst:.2f} | " + " | ".join(line))


if __name__ == "__main__":
    asyncio.run(main())
