"""Ollama failing while callers speak: how soon the caller hears the fallback, and the breaker.

    python bench/ollama_faults.py [--questions 10] [--json out.json]

The server runs in-process on a loopback socket with the real models; its agent answers through
the Ollama backend (the default timeouts: the acknowledgement at 0.8 s, the first-token timeout at
2 s) pointed at the scriptable stand-in Ollama of tests/support/ollama_standin.py, scripted for each
fault: connection refused, a hang (accepts, never answers), HTTP 503, the stream cut before the
first sentence (the extractive answer follows), and cut after it (the apology and a handoff).
Spoken questions (the bundled Piper voice) are streamed in real time, one call each. The
backend, and so its breaker, is made afresh every three questions: those three measure the
fault, and one more question checks that the breaker opened (it must not reach the stand-in)
and measures an answer given without asking Ollama.

Timings, per question:

- **first audio**: end of speech detected → first reply audio sent (`timings_ms.first_audio`);
  the acknowledgement when one was spoken first;
- **fallback heard**: end of speech detected → the caller starts hearing the fallback's own
  words (the extractive answer, or the apology), the reply audio played out as it arrives,
  after the acknowledgement or the model's first sentence when those came first;
- **perceived**: last voiced sample sent → the fallback's words heard (the silence window
  included): what the caller waits.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.agent import KnowledgeAgent  # noqa: E402
from agent.kb import demo_kb_dir, load_kb  # noqa: E402
from agent.ollama import LLM_FALLBACK, LLM_SKIPPED, OllamaBackend  # noqa: E402
from bench.latency import machine, percentile  # noqa: E402
from tests.support.ollama_standin import OllamaStandIn, Script, free_port  # noqa: E402
from tts.normalize import normalize_for_speech  # noqa: E402
from voice.call.reply import clause_splitter  # noqa: E402
from voice.channels.codecs import AudioFormat, int16_to_float, resample  # noqa: E402
from voice.clients.client import CallClient, Turn  # noqa: E402
from voice.config import Settings, load_settings  # noqa: E402
from voice.ops.server import start_server  # noqa: E402
from voice.ops.services import Services, load_services  # noqa: E402

QUESTIONS = [
    "My smart bulb keeps flashing red. What should I do?",
    "If I order today, when will my package ship?",
    "How do I set a static IP address for the hub?",
    "My smart plug will not connect to the app.",
    "How do I reset my door lock?",
    "My thermostat shows the wrong temperature.",
    "The camera keeps going offline.",
    "Do you ship on weekends?",
]
"""Questions the backend answers (no FAQ entry matches them)."""

MODEL_REPLY = "I can help with that. Please follow the steps in our manual, one at a time."
"""The stand-in's answer when it gets that far: 5 words make the first sentence."""

FAULTS: dict[str, dict[str, Any]] = {
    "refused": {},
    "hang": {"hang": True},
    "503": {"status": 503},
    "cut before the first sentence": {"cut_after": 3},
    "cut after the first sentence": {"cut_after": 8},
}
RATE = 16_000
PCM16 = AudioFormat("pcm16", RATE)


class TimedCall(CallClient):
    """A caller that notes when each piece of reply audio arrived, to play it out."""

    def __init__(self, url: str) -> None:
        super().__init__(url, PCM16, realtime_playback=False)
        self.arrivals: dict[int, list[tuple[float, int]]] = {}
        """Per turn: (arrival time, samples) of each audio frame, in order."""

    def _on_audio(self, data: bytes) -> None:
        if self._reply_turn is not None:
            frames = self.arrivals.setdefault(self._reply_turn, [])
            frames.append((time.monotonic(), len(data) // 2))
        super()._on_audio(data)


def heard_at(arrivals: list[tuple[float, int]], offset: int) -> float | None:
    """When sample `offset` of the reply plays, on a caller's player that plays each frame as
    soon as it has arrived and the one before it has played (no jitter buffer)."""
    played_until, position = 0.0, 0
    for arrived, samples in arrivals:
        start = max(arrived, played_until)
        if offset < position + samples:
            return start + (offset - position) / RATE
        played_until, position = start + samples / RATE, position + samples
    return None


async def spoken_samples(services: Services, text: str) -> int:
    """How many samples at 16 kHz the server's voice makes of `text`, clause by clause."""
    splitter = clause_splitter(services.settings.call)
    total = 0.0
    for clause in splitter.feed_written(text) + splitter.flush():
        audio = await services.synthesizer.synthesize(normalize_for_speech(clause))
        total += len(audio) * RATE / services.synthesizer.sample_rate
    return round(total)


def fallback_prefix(turn: Turn, settings: Settings) -> str:
    """The reply's text that was spoken before the fallback's own words."""
    apology = settings.agent.llm_failure_message
    if apology in turn.reply:
        return turn.reply.split(apology)[0]
    if turn.reply.startswith(settings.agent.ack_message):
        return settings.agent.ack_message
    return ""


async def question_clips(services: Services) -> list[np.ndarray]:
    clips = []
    for question in QUESTIONS:
        audio = await services.synthesizer.synthesize(question)
        rate = services.synthesizer.sample_rate
        speech = resample(int16_to_float(audio), rate, RATE).astype(np.float32)
        clips.append(np.concatenate([np.zeros(RATE * 3 // 10, np.float32), speech]))
    return clips


async def ask(
    services: Services, url: str, clip: np.ndarray, question: str, prefixes: dict[str, int]
) -> dict[str, Any]:
    """One spoken question in its own call; the row of timings."""
    async with TimedCall(url) as call:
        sent_at = time.monotonic()
        turn = await call.ask(clip, realtime=True)
        perceived_first = turn.timings_ms.get("perceived")
        last_voiced_at = (
            turn.first_audio_at - perceived_first / 1000
            if turn.first_audio_at is not None and perceived_first is not None
            else sent_at
        )
        arrivals = call.arrivals.get(turn.turn, [])
    prefix = fallback_prefix(turn, services.settings)
    if prefix not in prefixes:
        prefixes[prefix] = await spoken_samples(services, prefix) if prefix else 0
    fallback_at = heard_at(arrivals, prefixes[prefix])
    first_audio = turn.timings_ms.get("first_audio")
    row: dict[str, Any] = {
        "question": question,
        "transcript": turn.transcript,
        "rules": turn.rules,
        "handoff": turn.handoff,
        "spoken_before_fallback": prefix,
        "asr_ms": turn.timings_ms.get("asr"),
        "first_text_ms": turn.timings_ms.get("first_text"),
        "first_audio_ms": first_audio,
        "fallback_heard_ms": None,
        "perceived_ms": None,
    }
    if fallback_at is not None and first_audio is not None and turn.first_audio_at is not None:
        row["fallback_heard_ms"] = round(first_audio + (fallback_at - turn.first_audio_at) * 1000)
        row["perceived_ms"] = round((fallback_at - last_voiced_at) * 1000)
    return row


async def run_fault(
    fault: str, services: Services, clips: list[np.ndarray], count: int, prefixes: dict[str, int]
) -> dict[str, Any]:
    kb = load_kb(services.settings.agent.kb_dir or demo_kb_dir())
    script = dataclasses.replace(Script(reply=MODEL_REPLY, chunk_s=0.03), **FAULTS[fault])
    faulty: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []
    async with OllamaStandIn(script) as ollama:
        url = f"http://127.0.0.1:{free_port()}" if fault == "refused" else ollama.url
        settings = dataclasses.replace(
            services.settings,
            agent=dataclasses.replace(services.settings.agent, ollama_url=url, backend="ollama"),
        )
        asked = 0
        while asked < count:
            backend = OllamaBackend(settings.agent)
            agent = KnowledgeAgent(settings.agent, kb, backend=backend)
            round_services = dataclasses.replace(services, settings=settings, agent=agent)
            runner, port = await start_server(round_services, "127.0.0.1", 0)
            call_url = f"ws://127.0.0.1:{port}/call"
            try:
                in_round = min(3, count - asked)
                for _ in range(in_round):
                    index = asked % len(QUESTIONS)
                    row = await ask(services, call_url, clips[index], QUESTIONS[index], prefixes)
                    faulty.append(row)
                    asked += 1
                    print(f"{fault}: {row}", file=sys.stderr)
                if in_round < 3:
                    break
                before = len(ollama.requests)
                index = asked % len(QUESTIONS)
                row = await ask(services, call_url, clips[index], QUESTIONS[index], prefixes)
                skipped.append(row)
                print(f"{fault}, breaker open: {row}", file=sys.stderr)
                rounds.append(
                    {
                        "opened_after_3": backend.breaker.state.open,
                        "fourth_skipped": LLM_SKIPPED in row["rules"],
                        "fourth_reached_ollama": len(ollama.requests) > before,
                    }
                )
            finally:
                await runner.cleanup()
    return {"fault": fault, "questions": faulty, "skipped": skipped, "rounds": rounds}


def stats(rows: list[dict[str, Any]], name: str) -> dict[str, float]:
    values = [float(row[name]) for row in rows if row.get(name) is not None]
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else float("nan"),
        "n": len(values),
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    rows, skipped, rounds = result["questions"], result["skipped"], result["rounds"]
    return {
        "fault": result["fault"],
        "questions": len(rows),
        "fell_back": sum(LLM_FALLBACK in row["rules"] for row in rows),
        "handed_off": sum(row["handoff"] for row in rows),
        "asr_ms": stats(rows, "asr_ms"),
        "first_audio_ms": stats(rows, "first_audio_ms"),
        "fallback_heard_ms": stats(rows, "fallback_heard_ms"),
        "perceived_ms": stats(rows, "perceived_ms"),
        "breaker_opened_after_3": sum(r["opened_after_3"] and r["fourth_skipped"] for r in rounds),
        "rounds": len(rounds),
        "fourth_reached_ollama": sum(r["fourth_reached_ollama"] for r in rounds),
        "skipped_first_audio_ms": stats(skipped, "first_audio_ms"),
        "skipped_perceived_ms": stats(skipped, "perceived_ms"),
    }


def table(summaries: list[dict[str, Any]]) -> str:
    def cell(s: dict[str, float]) -> str:
        return f"{s['p50']:.0f} / {s['p95']:.0f} / {s['max']:.0f}"

    lines = [
        "| fault | fell back | ASR after end of speech | first audio | fallback heard | perceived "
        "| breaker opened after 3 | breaker open: first audio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['fault']} | {s['fell_back']}/{s['questions']} | {cell(s['asr_ms'])} "
            f"| {cell(s['first_audio_ms'])} | {cell(s['fallback_heard_ms'])} "
            f"| {cell(s['perceived_ms'])} | {s['breaker_opened_after_3']}/{s['rounds']} "
            f"| {cell(s['skipped_first_audio_ms'])} |"
        )
    return "\n".join(lines)


async def run(count: int, faults: list[str], settings: Settings) -> dict[str, Any]:
    services = load_services(settings, agent=KnowledgeAgent.from_settings(settings.agent))
    load_before = os.getloadavg()
    try:
        clips = await question_clips(services)
        prefixes: dict[str, int] = {}
        results = [await run_fault(f, services, clips, count, prefixes) for f in faults]
    finally:
        services.close()
    agent = settings.agent
    return {
        "machine": machine(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "silence_ms": settings.turns.silence_ms,
        "first_token_ack_s": agent.first_token_ack_s,
        "first_token_timeout_s": agent.first_token_timeout_s,
        "connect_timeout_s": agent.connect_timeout_s,
        "breaker_failures": agent.breaker_failures,
        "breaker_open_s": agent.breaker_open_s,
        "summaries": [summary(r) for r in results],
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=10, help="questions per fault mode")
    parser.add_argument("--fault", action="append", choices=list(FAULTS), help="default: all")
    parser.add_argument("--json", type=Path, help="write every question's timings here")
    args = parser.parse_args()
    settings = load_settings(environ=os.environ)
    result = asyncio.run(run(args.questions, args.fault or list(FAULTS), settings))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    before, after = result["load_average_before_after"]
    print(f"{result['machine']}; silence window {result['silence_ms']} ms")
    print(f"load average (1 min) before / after the run: {before} / {after}")
    print("timings in ms, p50 / p95 / max")
    print(table(result["summaries"]))


if __name__ == "__main__":
    main()
