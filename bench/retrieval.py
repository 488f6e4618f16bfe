"""Micro-benchmark: retrieval latency on a 1,000-passage knowledge base.

Run: python bench/retrieval.py [--passages 1000] [--model minilm-l6-int8]

The KB is made of the real passages of the KBs under eval/ (five trades and the demo), copied
into as many documents as it takes to reach `--passages` (each copy's headings numbered apart,
so no two passages are the same text); the questions are their suites' typed questions. Prints
the index build time (every unit embedded, no cache) and the p50/p95/max milliseconds per
question for what the agent does per question: the question's embedding and the search
(target: p95 <= 15 ms on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.embedder import shared_embedder  # noqa: E402
from agent.embeddings import EmbeddingCache  # noqa: E402
from agent.kb import demo_kb_dir, load_kb  # noqa: E402
from agent.retrieval import Retriever  # noqa: E402

EVAL = Path(__file__).resolve().parent.parent / "eval"


def source_kbs() -> list[Path]:
    return [demo_kb_dir(), *sorted(p.parent for p in EVAL.glob("*/kb/faq.yaml"))]


def make_kb(root: Path, passages: int) -> int:
    """Write copies of the real passages until there are `passages`; returns how many."""
    sources = [p for kb in source_kbs() for p in load_kb(kb).passages]
    written = 0
    copy = 0
    while written < passages:
        lines = [f"# Manual {copy}", ""]
        for number, passage in enumerate(sources, 1):
            if written >= passages:
                break
            lines += [f"## {number} {passage.heading} ({copy})", "", passage.text, ""]
            written += 1
        (root / f"manual{copy}.md").write_text("\n".join(lines), encoding="utf-8")
        copy += 1
    return written


def questions() -> list[str]:
    out = []
    for path in sorted(EVAL.glob("*/questions.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]:
            out += [turn["text"] for turn in case.get("turns", [case])]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--model", default="minilm-l6-int8")
    args = parser.parse_args()
    embedder = shared_embedder(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        count = make_kb(Path(tmp), args.passages)
        kb = load_kb(Path(tmp))
        start = time.perf_counter()
        retriever = Retriever(kb, embedder, EmbeddingCache(None))
        build_s = time.perf_counter() - start
    asked = questions()
    for question in asked[:20]:  # warm-up
        retriever.search(question, retriever.embed(question))
    timings = []
    for question in asked:
        start = time.perf_counter()
        retriever.search(question, retriever.embed(question))
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    p95 = timings[int(0.95 * (len(timings) - 1))]
    print(
        f"{count} passages, model {args.model}: index built in {build_s:.1f} s; "
        f"{len(timings)} questions: p50 {statistics.median(timings):.2f} ms, "
        f"p95 {p95:.2f} ms, max {timings[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main()
