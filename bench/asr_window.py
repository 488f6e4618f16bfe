"""The fitted recognition window: as accurate as Whisper's 30 s window, and how much faster?

    python bench/asr_window.py                     # every suite under eval/, three conditions
    python bench/asr_window.py --suites utility waste --conditions telephone
    python bench/asr_window.py --doubted           # the transcripts in doubt, three ways

Transcribes every recorded question of the evaluation suites (questions written for five
trades, spoken by espeak-ng, flite and the bundled Piper voice; clean, 8 kHz telephone and
noisy audio) twice with the server's recognizer, as the server calls it (the suite's KB words as
the hint): once reading Whisper's full 30 s window, once the window fitted to the audio
(`asr.fitted_window`). Reports the pooled word error rate against the question's text, the time
per transcription, how often the fitted window was doubted and read again, and how
often only one of the two ways trusts its transcript (`Transcript.reliable`).
One transcription at a time, on `asr.threads` threads.

`--doubted` takes the questions whose fitted window is in doubt at its first reading and
compares what to do then: keep that reading (as for a partial, `once`), read the same window
again with the wider search (`asr.whisper.SECOND_SEARCH`, what the server does), or
faster-whisper's own way (30 s windows, retried at higher temperatures, what the server did
before). Word error rate over those questions, how many transcripts each way trusts
(`Transcript.reliable`), and the time each way takes in all, the first reading included.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.kb import load_kb  # noqa: E402
from agent.vocabulary import hotwords  # noqa: E402
from asr.settings import AsrSettings  # noqa: E402
from asr.whisper import Transcriber, Transcript  # noqa: E402
from bench.latency import machine, percentile  # noqa: E402
from voice.channels.codecs import resample  # noqa: E402
from voice.eval.wer import align, pooled_wer  # noqa: E402

EVAL = Path(__file__).resolve().parent.parent / "eval"
CONDITIONS = ("clean", "telephone", "noisy")
RATE = 16_000


def recordings(suite: str, condition: str) -> list[tuple[str, Path]]:
    """(the question's text, its recording) for one suite and condition."""
    index = json.loads((EVAL / suite / "audio" / "index.json").read_text())
    return [
        (made[0], EVAL / suite / name)
        for name, made in index.items()
        if name.startswith(f"audio/{condition}/")
    ]


def measure(
    transcriber: Transcriber, hint: str, cases: list[tuple[str, Path]]
) -> tuple[list[Transcript], list[float]]:
    heard, seconds = [], []
    for _, path in cases:
        transcript, took_s = timed(
            functools.partial(transcriber.transcribe_blocking, read(path), hint or None)
        )
        heard.append(transcript)
        seconds.append(took_s)
    return heard, seconds


def read(path: Path) -> np.ndarray:
    audio, rate = soundfile.read(path, dtype="float32")
    return audio if rate == RATE else resample(audio, rate, RATE)


WAYS = ("kept", "read again", "full way")


@dataclass(frozen=True)
class Doubted:
    """A question whose fitted window was in doubt at its first reading, and each way on from
    there: the transcript, and the seconds from the start of the first reading."""

    question: str
    ways: dict[str, tuple[Transcript, float]]


def timed(transcribe: Callable[[], Transcript]) -> tuple[Transcript, float]:
    began = time.perf_counter()
    heard = transcribe()
    return heard, time.perf_counter() - began


def doubted(
    server: Transcriber, full: Transcriber, hint: str, cases: list[tuple[str, Path]]
) -> list[Doubted]:
    """The questions `server` reads again, each also read once (`once`, the first reading
    kept) and, after that first reading, the full way by `full`."""
    found = []
    for question, path in cases:
        audio = read(path)
        again = timed(functools.partial(server.transcribe_blocking, audio, hint or None))
        if not again[0].read_again:
            continue
        kept = timed(functools.partial(server.transcribe_blocking, audio, hint or None, once=True))
        whole, whole_s = timed(functools.partial(full.transcribe_blocking, audio, hint or None))
        ways = {"kept": kept, "read again": again, "full way": (whole, kept[1] + whole_s)}
        found.append(Doubted(question, ways))
    return found


def compare_doubted(suites: list[str], conditions: list[str], as_json: bool) -> None:
    server = Transcriber(AsrSettings())
    full = Transcriber(dataclasses.replace(server.settings, fitted_window=False))
    rows = []
    for condition in conditions:
        found: list[Doubted] = []
        for suite in suites:
            found += doubted(server, full, suite_hint(suite), recordings(suite, condition))
        row: dict[str, Any] = {"condition": condition, "doubted": len(found)}
        for way in WAYS:
            heard = [(case.question, *case.ways[way]) for case in found]
            seconds = [s for _, _, s in heard]
            row[way] = {
                "wer": pooled_wer([align(question, h.text) for question, h, _ in heard]),
                "trusted": sum(h.reliable for _, h, _ in heard),
                "p50_ms": round(percentile(seconds, 50) * 1000) if seconds else None,
                "p95_ms": round(percentile(seconds, 95) * 1000) if seconds else None,
            }
        rows.append(row)
        if not as_json:
            print(
                f"{condition:9} doubted {len(found):3}  "
                + "  ".join(
                    f"{way} WER {row[way]['wer']:.3f} trusted {row[way]['trusted']}"
                    f" ms {row[way]['p50_ms']}/{row[way]['p95_ms']}"
                    for way in WAYS
                ),
                flush=True,
            )
    if as_json:
        print(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    else:
        print(f"machine: {machine()}")


def suite_hint(suite: str) -> str:
    return hotwords(load_kb(EVAL / suite / "kb")) if (EVAL / suite / "kb").is_dir() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    suites = sorted(p.name for p in EVAL.iterdir() if (p / "audio" / "index.json").exists())
    parser.add_argument("--suites", nargs="+", default=[s for s in suites if s != "demo"])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--doubted", action="store_true", help="compare the ways on for transcripts in doubt"
    )
    args = parser.parse_args()
    if args.doubted:
        compare_doubted(args.suites, args.conditions, args.json)
        return

    full = Transcriber(AsrSettings(fitted_window=False))
    fitted = Transcriber(dataclasses.replace(full.settings, fitted_window=True))
    rows = []
    for condition in args.conditions:
        for suite in args.suites:
            hint = suite_hint(suite)
            cases = recordings(suite, condition)
            row: dict[str, object] = {"suite": suite, "condition": condition, "n": len(cases)}
            results = {}
            for name, transcriber in (("full", full), ("fitted", fitted)):
                heard, seconds = measure(transcriber, hint, cases)
                results[name] = heard
                row[f"{name}_wer"] = pooled_wer(
                    [align(text, h.text) for (text, _), h in zip(cases, heard, strict=True)]
                )
                row[f"{name}_p50_ms"] = round(percentile(seconds, 50) * 1000)
                row[f"{name}_p95_ms"] = round(percentile(seconds, 95) * 1000)
            row["read_again"] = sum(h.read_again for h in results["fitted"])
            pairs = list(zip(results["full"], results["fitted"], strict=True))
            row["trusted_full_only"] = sum(a.reliable and not b.reliable for a, b in pairs)
            row["trusted_fitted_only"] = sum(b.reliable and not a.reliable for a, b in pairs)
            rows.append(row)
            if not args.json:
                print(
                    f"{condition:9} {suite:9} n={row['n']:3}  WER full {row['full_wer']:.3f}"
                    f" fitted {row['fitted_wer']:.3f}  ms p50/p95 full"
                    f" {row['full_p50_ms']}/{row['full_p95_ms']} fitted"
                    f" {row['fitted_p50_ms']}/{row['fitted_p95_ms']}"
                    f"  read again {row['read_again']}  trusted by one only: full"
                    f" {row['trusted_full_only']} fitted {row['trusted_fitted_only']}",
                    flush=True,
                )
    if args.json:
        print(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    else:
        print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
