"""A caller's latency and reply audio while the console's login is flooded with wrong passwords.

    python bench/login_flood.py [--turns 10] [--rounds 2] [--flooders 20] [--json out.json]

The server runs as its own process (`python -m voice.cli serve`, embedded models in worker
processes, the extractive backend; see bench/load.py), with one supervisor. One caller asks
spoken questions in real time, a call per round, and plays the replies in real time: `--turns`
questions with no other load and the same `--turns` while `--flooders` clients each send wrong
passwords for that supervisor to `POST /api/login` back to back (the next as soon as the
answer comes, Retry-After ignored), as the reported attack did. The two take turns, in
`--rounds` rounds, so that a machine busy with something else at some moment weighs on both
alike; the flood starts `FLOOD_LEAD_S` before the round's first question.

Reports for each phase: end of speech → first reply audio (the server's `first_audio`) and what
the caller perceives (last voiced sample sent → first reply audio received), p50/p95/max; the
longest silence inside a reply for a player with no buffer of its own that starts playing at the
first frame (the server sends `call.playback_lead_ms` ahead, so 0 unless it falls behind by more
than that); the longest wait between two reply frames; replies whose audio did not all arrive
(against `reply.end.audio_ms`); and for the flood, how many logins were answered, by status,
and how many passwords were checked (the 401s).

To measure another version of the server (say the one before the login throttle), point
`--server-path` at a copy of its source tree (`git archive <commit> | tar -x -C DIR`); the
settings go through the environment as usual (`VOICEDESK_CONSOLE_LOGIN_FREE_FAILURES=1000000`
with `..._LOGIN_LOCK_FAILURES=1000000` turns the throttle off, to see what one password check
at a time does on its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from latency import QUESTIONS, column, machine  # noqa: E402
from load import Server, make_clips  # noqa: E402

from voice.channels.codecs import AudioFormat  # noqa: E402
from voice.clients.client import CallClient  # noqa: E402
from voice.office.auth import Users  # noqa: E402

PCM16 = AudioFormat("pcm16", 16000)
SUPERVISOR, PASSWORD = "alice", "correct horse battery staple"
FLOOD_LEAD_S = 3.0
"""The flood runs this long before the first question."""


class TimedCall(CallClient):
    """A call that also notes when each frame of reply audio arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(url, PCM16, realtime_playback=True)
        self.frames: dict[int, list[tuple[float, int]]] = defaultdict(list)

    def _on_audio(self, data: bytes) -> None:
        super()._on_audio(data)
        if self._reply_turn is not None:
            self.frames[self._reply_turn].append((time.monotonic(), len(data)))


def reply_gaps_ms(frames: list[tuple[float, int]]) -> tuple[float, float]:
    """(longest silence heard by a player with no buffer, longest wait between frames)."""
    silence = interval = 0.0
    play_end: float | None = None
    previous: float | None = None
    for at, nbytes in frames:
        duration = nbytes / PCM16.bytes_per_sample / PCM16.sample_rate
        start = at if play_end is None else max(at, play_end)
        if play_end is not None:
            silence = max(silence, start - play_end)
        if previous is not None:
            interval = max(interval, at - previous)
        play_end, previous = start + duration, at
    return silence * 1000, interval * 1000


async def ask_all(
    url: str, clips: dict[str, np.ndarray], questions: list[str]
) -> list[dict[str, Any]]:
    rows = []
    call = TimedCall(url)
    async with call:
        for question in questions:
            turn = await call.ask(clips[question], realtime=True, timeout=120)
            await asyncio.sleep(1.5)  # the end of the reply plays out (`playback_lead_ms`)
            silence, interval = reply_gaps_ms(call.frames.get(turn.turn, []))
            received_ms = len(turn.audio) // PCM16.bytes_per_sample * 1000 // PCM16.sample_rate
            rows.append(
                {"question": question, "transcript": turn.transcript, "reply": bool(turn.reply),
                 "gap_ms": round(silence), "frame_interval_ms": round(interval),
                 "audio_ms": turn.audio_ms, "received_ms": received_ms, **turn.timings_ms}
            )  # fmt: skip
            print(f"  {rows[-1]}", file=sys.stderr)
    return rows


async def flood(base: str, number: int, stop: asyncio.Event, tally: Counter[int]) -> None:
    body = {"name": SUPERVISOR, "password": f"guess-{number}"}
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            try:
                async with http.post(f"{base}/api/login", json=body) as response:
                    await response.read()
                    tally[response.status] += 1
            except aiohttp.ClientError:
                tally[0] += 1
                await asyncio.sleep(0.1)


@dataclass
class Phase:
    flooders: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    logins: Counter[int] = field(default_factory=Counter)
    """Login answers by HTTP status (0: no answer)."""
    seconds: float = 0.0
    load: list[float] = field(default_factory=list)
    """The machine's 1-minute load average at the start and the end of each round."""

    def summary(self) -> dict[str, Any]:
        def stats(name: str) -> dict[str, float]:
            return column(self.rows, name)

        return {
            "flooders": self.flooders,
            "turns": len(self.rows),
            "unanswered": sum(not r["reply"] for r in self.rows),
            "audio_mismatches": sum(abs(r["received_ms"] - r["audio_ms"]) > 1 for r in self.rows),
            "end_of_speech_to_first_audio_ms": stats("first_audio"),
            "perceived_ms": stats("perceived"),
            "gap_ms": stats("gap_ms"),
            "frame_interval_ms": stats("frame_interval_ms"),
            "logins_by_status": dict(sorted(self.logins.items())),
            "logins_per_s": round(sum(self.logins.values()) / max(self.seconds, 1e-9), 1),
            "seconds": round(self.seconds, 1),
            "load_average": self.load,
            "rows": self.rows,
        }


async def one_round(
    server: Server, clips: dict[str, np.ndarray], questions: list[str], phase: Phase
) -> None:
    base = f"http://127.0.0.1:{server.port}"
    stop = asyncio.Event()
    tasks = [asyncio.create_task(flood(base, n, stop, phase.logins)) for n in range(phase.flooders)]
    began = time.monotonic()
    phase.load.append(os.getloadavg()[0])
    try:
        if phase.flooders:
            await asyncio.sleep(FLOOD_LEAD_S)
        phase.rows += await ask_all(server.url, clips, questions)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    phase.seconds += time.monotonic() - began
    phase.load.append(os.getloadavg()[0])


async def run(turns: int, rounds: int, flooders: int, server_path: Path | None) -> dict[str, Any]:
    clips = make_clips()
    if server_path is not None:
        os.environ["PYTHONPATH"] = str(server_path)
    quiet, flooded = Phase(0), Phase(flooders)
    with tempfile.TemporaryDirectory() as data_dir:
        users = Users(Path(data_dir) / "voicedesk.db")
        users.add(SUPERVISOR, PASSWORD)
        users.close()
        server = await Server.start(data_dir, max_calls=4)
        try:
            await asyncio.sleep(2)
            per_round = max(turns // rounds, 1)
            for number in range(rounds):
                first = number * per_round
                questions = [QUESTIONS[(first + i) % len(QUESTIONS)] for i in range(per_round)]
                for phase in (quiet, flooded):  # the same questions with and without
                    print(f"round {number + 1}, {phase.flooders} flooders", file=sys.stderr)
                    await one_round(server, clips, questions, phase)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{server.port}/metrics") as response,
            ):
                metrics = [
                    line for line in (await response.text()).splitlines()
                    if line.startswith("voicedesk_logins_total")
                ]  # fmt: skip
        finally:
            code = await server.stop()
    return {
        "machine": machine(),
        "server": str(server_path or BENCH.parent),
        "settings": {k: v for k, v in os.environ.items() if k.startswith("VOICEDESK_")},
        "rounds": rounds,
        "quiet": quiet.summary(),
        "flood": flooded.summary(),
        "login_metrics": metrics,
        "server_exit_code": code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=10, help="questions with, and without")
    parser.add_argument("--rounds", type=int, default=2, help="quiet and flooded, taking turns")
    parser.add_argument("--flooders", type=int, default=20)
    parser.add_argument("--server-path", type=Path, help="run the server from this source tree")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    server_path = args.server_path.resolve() if args.server_path else None
    result = asyncio.run(run(args.turns, args.rounds, args.flooders, server_path))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    for name in ("quiet", "flood"):
        result[name] = {k: v for k, v in result[name].items() if k != "rows"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
