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
compares what to do then: keep that reading, read the same window again with the wider search
(`asr.whisper.SECOND_SEARCH`, what the server does), or faster-whisper's own way (30 s windows,
retried at higher temperatures, what the server did before). Word error rate over those
questions and the time each way takes in all, the first reading included.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.kb import load_kb  # noqa: E402
from agent.vocabulary import hotwords  # noqa: E402
from asr.settings import AsrSettings  # noqa: E402
from asr.whisper import SECOND_SEARCH, Transcriber, Transcript  # noqa: E402
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
        audio = read(path)
        began = time.perf_counter()
        heard.append(transcriber.transcribe_blocking(audio, hotwords=hint or None))
        seconds.append(time.perf_counter() - began)
    return heard, seconds


def read(path: Path) -> np.ndarray:
    audio, rate = soundfile.read(path, dtype="float32")
    return audio if rate == RATE else resample(audio, rate, RATE)


def doubted(transcriber: Transcriber, hint: str, cases: list[tuple[str, Path]]) -> list[dict]:
    """For each question whose fitted window is in doubt at its first reading: its text, and
    the transcript and seconds of each way on from there."""
    found = []
    for text, path in cases:
        audio = read(path)
        began = time.perf_counter()
        window = transcriber._fitted_window(audio, hint or None, "en")
        first, doubt = transcriber._read(window, beam_size=transcriber.settings.beam_size)
        first_s = time.perf_counter() - began
        if not doubt:
            continue
        began = time.perf_counter()
        again, _ = transcriber._read(window, **SECOND_SEARCH)
        again_s = time.perf_counter() - began
        full = transcriber._transcribe_windows(audio, hint or None, "en")
        full_s = time.perf_counter() - began - again_s
        found.append(
            {
                "question": text,
                "kept": (first.text, first_s),
                "read again": (again.text, first_s + again_s),
                "full way": (full.text, first_s + full_s),
            }
        )
    return found


def compare_doubted(suites: list[str], conditions: list[str], as_json: bool) -> None:
    transcriber = Transcriber(AsrSettings())
    rows = []
    for condition in conditions:
        found = []
        for suite in suites:
            found += doubted(transcriber, suite_hint(suite), recordings(suite, condition))
        row: dict[str, Any] = {"condition": condition, "doubted": len(found)}
        for way in ("kept", "read again", "full way"):
            heard = [(case["question"], case[way]) for case in found]
            seconds = [s for _, (_, s) in heard]
            row[way] = {
                "wer": pooled_wer([align(question, text) for question, (text, _) in heard]),
                "p50_ms": round(percentile(seconds, 50) * 1000) if seconds else None,
                "p95_ms": round(percentile(seconds, 95) * 1000) if seconds else None,
            }
        rows.append(row)
        if not as_json:
            print(
                f"{condition:9} doubted {len(found):3}  "
                + "  ".join(
                    f"{way} WER {row[way]['wer']:.3f} ms {row[way]['p50_ms']}/{row[way]['p95_ms']}"
                    for way in ("kept", "read again", "full way")
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
