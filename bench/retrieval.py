"""Micro-benchmark: retrieval latency on a synthetic 1,000-passage knowledge base.

Run: python bench/retrieval.py [--passages 1000] [--questions 500]
Prints index build time and p50/p95/max milliseconds per question (target: p95 < 10 ms).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.kb import load_kb  # noqa: E402
from agent.normalize import word_list  # noqa: E402
from agent.retrieval import Retriever  # noqa: E402

SYLLABLES = word_list("ba ko ri tu me sa lo vi ne da pu ge fo zi ha mo ke ru ti wa")
COMMON = word_list(
    "the device app router light button reset connect network battery order "
    "warranty return refund camera sensor lock bulb plug thermostat hub setting "
    "power update"
)


def make_words(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(count)]


def make_kb(root: Path, passages: int, rng: random.Random) -> list[list[str]]:
    """Write ``passages`` passages over 20 Markdown files; returns each passage's words."""
    vocabulary = make_words(rng, 4000)
    per_file = passages // 20
    contents: list[list[str]] = []
    for f in range(20):
        lines = [f"# Manual {f}", ""]
        for s in range(per_file):
            heading = rng.sample(vocabulary, 3)
            body = [rng.choice(COMMON if rng.random() < 0.3 else vocabulary) for _ in range(60)]
            contents.append(heading + body)
            lines += [f"## {f}.{s} {' '.join(heading)}", ""]
            for i in range(0, 60, 12):
                lines.append(" ".join(body[i : i + 12]).capitalize() + ".")
            lines += ["1. Press the " + body[0] + " button.", "2. Open the app.", ""]
        (root / f"manual{f}.md").write_text("\n".join(lines), encoding="utf-8")
    return contents


def misspell(word: str, rng: random.Random) -> str:
    if len(word) < 5 or rng.random() < 0.7:
        return word
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=500)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        contents = make_kb(Path(tmp), args.passages, rng)
        kb = load_kb(Path(tmp))
        start = time.perf_counter()
        retriever = Retriever(kb)
        build_ms = (time.perf_counter() - start) * 1000
    questions = []
    for _ in range(args.questions):
        words = rng.sample(rng.choice(contents), 5)
        questions.append("um how do i " + " ".join(misspell(w, rng) for w in words) + " please")
    for question in questions[:20]:  # warm-up
        retriever.search(question)
    timings = []
    for question in questions:
        start = time.perf_counter()
        retriever.search(question)
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    p50 = statistics.median(timings)
    p95 = timings[int(len(timings) * 0.95) - 1]
    print(f"passages: {len(kb.passages)}  index build: {build_ms:.0f} ms")
    print(
        f"questions: {len(timings)}  p50: {p50:.2f} ms  p95: {p95:.2f} ms  "
        f"max: {timings[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main()
