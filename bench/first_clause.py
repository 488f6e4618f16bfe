"""The first clause of a reply: how long the caller waits for its synthesis, cut or not.

    python bench/first_clause.py                    # every typed question under eval/
    python bench/first_clause.py --chars 0,24,30,40 --limit 60

The caller's wait after the end of their turn is mostly the synthesis of the reply's first
clause (docs/benchmarks.md, "Turn-taking"). This answers every typed question of the evaluation
suites with the extractive backend on its own KB, takes the first clause of the reply as the
server cuts it with `call.first_clause_chars` at each value given (0: not cut), and times the
bundled Piper voice making it, one synthesis at a time as the server's synthesis worker does
(normalized for speech as the server does). Reports, per value, the share of replies whose
first sentence was cut, the first clause's length in audio, and its synthesis time p50 / p95 /
max. Each clause is made twice and the faster time kept (the machine's noise is not the
clause's).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.agent import KnowledgeAgent  # noqa: E402
from agent.kb import load_kb  # noqa: E402
from agent.types import AgentSettings, gather  # noqa: E402
from bench.latency import machine, percentile  # noqa: E402
from tts.normalize import normalize_for_speech  # noqa: E402
from tts.piper import Synthesizer, TtsSettings  # noqa: E402
from voice.call.reply import clause_splitter  # noqa: E402
from voice.config import CallSettings  # noqa: E402

EVAL = Path(__file__).resolve().parent.parent / "eval"


async def replies(limit: int) -> list[str]:
    """The extractive replies to the typed questions of every suite, `limit` per suite."""
    out = []
    for path in sorted(EVAL.glob("*/questions.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        kb = load_kb(path.parent / data["kb"]) if "kb" in data else None
        settings = AgentSettings(backend="extractive")
        agent = KnowledgeAgent(settings, kb) if kb else KnowledgeAgent.from_settings(settings)
        questions = [t["text"] for case in data["cases"] for t in case.get("turns", [case])]
        for question in questions[:limit]:
            reply, _ = await gather(agent.answer(question, ()))
            out.append(reply)
    return out


def first_clause(reply: str, chars: int) -> str:
    splitter = clause_splitter(CallSettings(first_clause_chars=chars))
    clauses = splitter.feed_written(reply) + splitter.flush()
    return clauses[0] if clauses else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", default="0,30", help="values of call.first_clause_chars")
    parser.add_argument("--limit", type=int, default=1000, help="questions per suite at most")
    args = parser.parse_args()
    values = [int(v) for v in args.chars.split(",")]
    answers = asyncio.run(replies(args.limit))
    voice = Synthesizer(TtsSettings())
    voice.synthesize_blocking("A warm-up sentence.")
    print(machine())
    print(f"{len(answers)} replies; Piper {voice.describe()}")
    print("| first_clause_chars | cut | first clause audio p50 / p95 | synthesis p50 / p95 / max |")
    print("|---|---|---|---|")
    for chars in values:
        cut, seconds, times = 0, [], []
        for reply in answers:
            clause = first_clause(reply, chars)
            whole = first_clause(reply, 0)
            cut += clause != whole
            spoken = normalize_for_speech(clause)
            best = float("inf")
            for _ in range(2):
                began = time.perf_counter()
                audio = voice.synthesize_blocking(spoken)
                best = min(best, time.perf_counter() - began)
            seconds.append(len(audio) / voice.sample_rate * 1000)
            times.append(best * 1000)
        print(
            f"| {chars or 'not cut'} | {cut} of {len(answers)} "
            f"| {percentile(seconds, 50):.0f} / {percentile(seconds, 95):.0f} ms "
            f"| {percentile(times, 50):.0f} / {percentile(times, 95):.0f} / {max(times):.0f} ms |"
        )
    voice.close()


if __name__ == "__main__":
    main()
