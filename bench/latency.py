"""Voice-loop latency: spoken questions streamed in real time through the real server.

    python bench/latency.py [--rounds 2] [--silence-ms 600] [--json out.json]

Reports p50/p95 of end of speech detected → first reply audio (server side), last voiced audio →
first reply audio (what the caller perceives, silence window included), the ASR time after the
end of speech, and the ASR and TTS real-time factors, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asr.whisper import Transcriber  # noqa: E402
from tts.piper import Synthesizer  # noqa: E402
from voice.channels.codecs import AudioFormat, int16_to_float, resample  # noqa: E402
from voice.clients.client import CallClient  # noqa: E402
from voice.config import Settings, load_settings  # noqa: E402
from voice.ops.server import start_server  # noqa: E402
from voice.ops.services import load_services  # noqa: E402

QUESTIONS = [
    "My smart bulb keeps flashing red. What should I do?",
    "How many days do I have to return a product?",
    "If I order today, when will my package ship?",
    "How long is the warranty on your products?",
    "Can I trade in my old device?",
    "How do I set a static IP address for the hub?",
    "My smart plug will not connect to the app.",
    "The product arrived broken. Can you pick it up?",
    "How do I reset my door lock?",
    "Do you ship on weekends?",
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def column(rows: list[dict[str, Any]], name: str) -> dict[str, float]:
    """p50, p95, max and how many of a measure, over the rows that have it."""
    values = [float(row[name]) for row in rows if row.get(name) is not None]
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values, default=float("nan")),
        "n": len(values),
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


async def run(rounds: int, settings: Settings) -> dict[str, object]:
    services = load_services(settings)
    runner, port = await start_server(services, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{port}/call"
    # The real-time factors are measured on models of their own, outside the server's workers.
    voice, recognizer = Synthesizer(settings.tts), Transcriber(settings.asr)
    pcm = AudioFormat("pcm16", 16000)
    clips = {}
    tts_rtf = []
    for question in QUESTIONS:
        began = time.perf_counter()
        audio = voice.synthesize_blocking(question)
        tts_rtf.append((time.perf_counter() - began) / (len(audio) / voice.sample_rate))
        speech = resample(int16_to_float(audio), voice.sample_rate, 16000).astype(np.float32)
        clips[question] = np.concatenate([np.zeros(4800, np.float32), speech])
    asr_rtf = []
    for speech in clips.values():
        began = time.perf_counter()
        recognizer.transcribe_blocking(speech)
        asr_rtf.append((time.perf_counter() - began) / (len(speech) / 16000))
    rows = []
    try:
        for _ in range(rounds):
            for question, speech in clips.items():
                async with CallClient(url, pcm, realtime_playback=False) as call:
                    turn = await call.ask(speech, realtime=True)
                rows.append(
                    {"question": question, "transcript": turn.transcript, **turn.timings_ms}
                )
                print(f"{turn.timings_ms}  {turn.transcript!r}", file=sys.stderr)
    finally:
        await runner.cleanup()
        services.close()

    def stats(name: str) -> dict[str, float]:
        values = [float(row[name]) for row in rows if row.get(name) is not None]  # type: ignore[arg-type]
        return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}

    return {
        "machine": machine(),
        "silence_ms": settings.turns.silence_ms,
        "turns": len(rows),
        "end_of_speech_to_first_audio_ms": stats("first_audio"),
        "perceived_ms": stats("perceived"),
        "asr_after_end_of_speech_ms": stats("asr"),
        "asr_rtf": statistics.mean(asr_rtf),
        "tts_rtf": statistics.mean(tts_rtf),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--silence-ms", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = load_settings(environ=os.environ, flags={"llm": "extractive"})
    if args.silence_ms is not None:
        settings = dataclasses.replace(
            settings, turns=dataclasses.replace(settings.turns, silence_ms=args.silence_ms)
        )
    result = asyncio.run(run(args.rounds, settings))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    summary = {key: value for key, value in result.items() if key != "rows"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
