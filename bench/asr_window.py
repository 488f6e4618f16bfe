"""The fitted recognition window: as accurate as Whisper's 30 s window, and how much faster?

    python bench/asr_window.py                     # every suite under eval/, three conditions
    python bench/asr_window.py --suites utility waste --conditions telephone

Transcribes every recorded question of the evaluation suites (questions written for five
trades, spoken by espeak-ng, flite and the bundled Piper voice; clean, 8 kHz telephone and
noisy audio) twice with the server's recognizer, as the server calls it (the suite's KB words as
the hint): once reading Whisper's full 30 s window, once the window fitted to the audio
(`asr.fitted_window`). Reports the pooled word error rate against the question's text, the time
per transcription, how often the fitted window was doubted and made again the full way, and how
often only one of the two ways trusts its transcript (`Transcript.reliable`).
One transcription at a time, on `asr.threads` threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

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
        audio, rate = soundfile.read(path, dtype="float32")
        if rate != RATE:
            audio = resample(audio, rate, RATE)
        began = time.perf_counter()
        heard.append(transcriber.transcribe_blocking(audio, hotwords=hint or None))
        seconds.append(time.perf_counter() - began)
    return heard, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    suites = sorted(p.name for p in EVAL.iterdir() if (p / "audio" / "index.json").exists())
    parser.add_argument("--suites", nargs="+", default=[s for s in suites if s != "demo"])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    full = Transcriber(AsrSettings(fitted_window=False))
    fitted = Transcriber(dataclasses.replace(full.settings, fitted_window=True))
    rows = []
    for condition in args.conditions:
        for suite in args.suites:
            hint = hotwords(load_kb(EVAL / suite / "kb")) if (EVAL / suite / "kb").is_dir() else ""
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
            row["refitted"] = sum(not h.fitted for h in results["fitted"])
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
                    f"  made again {row['refitted']}  trusted by one only: full"
                    f" {row['trusted_full_only']} fitted {row['trusted_fitted_only']}",
                    flush=True,
                )
    if args.json:
        print(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    else:
        print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
