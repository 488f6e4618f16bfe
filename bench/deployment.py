"""Several servers behind one balancer, loaded: the deployment of docs/deploy.md on this machine.

    python bench/deployment.py [--servers 2] [--callers-per-server 8] [--minutes 10] [--json out]

Starts `voicedesk serve` N times (the embedded models, the extractive backend,
`limits.max_calls` = callers per server) on one PostgreSQL database made for the run (on
127.0.0.1:5432, dropped after) and one Redis (127.0.0.1:6379, a key prefix of its own), behind
Debian's HAProxy (`balance leastconn`, `/readyz` health checks). The callers of
`bench/load.py` (three spoken questions a call, real time, replies heard to their end) call
through the balancer; a supervisor logged in through the balancer watches the live feed.

Reports: calls and questions answered; end of speech → first reply audio and perceived latency,
p50/p95/max; how the calls spread over the servers; the most calls the console showed live at
once; and, after the servers stop, what PostgreSQL holds: every call ended, every answered
question a turn, every call's recording in the shared directory with its audio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from latency import column, machine  # noqa: E402
from load import Tally, caller, make_clips  # noqa: E402

from tests.support.deployment import (  # noqa: E402
    PASSWORD,
    add_supervisor,
    balancer,
    environment,
    serving,
)
from tests.support.postgres import fresh_database  # noqa: E402
from tests.support.redis import REDIS_URL  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

WAV_HEADER_BYTES = 44


class Watcher:
    """A supervisor's live feed through the balancer: the calls live, and the most at once."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.most = 0
        self.seen: set[str] = set()

    async def watch(self, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                base + "/api/login", json={"name": "alice", "password": PASSWORD}
            ) as response:
                headers = {"Authorization": f"Bearer {(await response.json())['token']}"}
            url = base.replace("http", "ws", 1) + "/api/live"
            async with http.ws_connect(url, headers=headers, heartbeat=20) as feed:
                async for message in feed:
                    event = json.loads(message.data)
                    if event["type"] == "call.started":
                        self.live.add(event["call_id"])
                        self.seen.add(event["call_id"])
                    elif event["type"] == "call.ended":
                        self.live.discard(event["call_id"])
                    self.most = max(self.most, len(self.live))


async def spread(ports: list[int], samples: list[list[int]]) -> None:
    """Every second, the calls on each server (`/healthz`)."""
    async with aiohttp.ClientSession() as http:
        while True:
            row = []
            for port in ports:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        row.append((await response.json())["calls"])
                except aiohttp.ClientError:
                    row.append(-1)
            samples.append(row)
            await asyncio.sleep(1)


def records(url: str, answered: dict[str, int], recordings: Path) -> dict[str, Any]:
    """What PostgreSQL holds of the calls the callers made, against what they heard."""
    with psycopg.connect(url) as db:
        calls = {
            call_id: (ended_at, recording)
            for call_id, ended_at, recording in db.execute(
                "SELECT call_id, ended_at, recording FROM calls WHERE channel = 'call'"
            ).fetchall()
        }
        turns = dict(
            db.execute(
                "SELECT call_id, count(*) FROM turns WHERE reply <> '' GROUP BY call_id"
            ).fetchall()
        )
    missing_calls = sorted(set(answered) - set(calls))
    not_ended = sorted(c for c, (ended_at, _) in calls.items() if ended_at is None)
    short = {c: (n, turns.get(c, 0)) for c, n in answered.items() if turns.get(c, 0) < n}
    no_recording = []
    for call_id in answered:
        name = calls.get(call_id, (None, None))[1]
        path = recordings / name if name else None
        if path is None or not path.is_file() or path.stat().st_size <= WAV_HEADER_BYTES:
            no_recording.append(call_id)
    return {
        "calls_in_postgresql": len(calls),
        "calls_missing": missing_calls,
        "calls_not_ended": not_ended,
        "answered_questions": sum(answered.values()),
        "turns_in_postgresql": sum(turns.get(c, 0) for c in answered),
        "calls_with_turns_missing": short,
        "calls_without_recording": no_recording,
    }


async def run(servers: int, per_server: int, minutes: float) -> dict[str, Any]:
    clips = make_clips()
    callers = servers * per_server
    tally = Tally()
    watcher = Watcher()
    samples: list[list[int]] = []
    prefix = f"voicedesk-bench-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as scratch, fresh_database() as records_url:
        data = Path(scratch)
        env = environment(  # the servers' settings of docs/deploy.md
            records_url,
            REDIS_URL,
            prefix,
            data,
            VOICEDESK_LIMITS_MAX_CALLS=str(per_server),
            VOICEDESK_LIMITS_MAX_WAITING_PER_ADDRESS="32",
            VOICEDESK_SERVER_MAX_CONNECTIONS_PER_ADDRESS="1000",
            VOICEDESK_SERVER_TRUSTED_PROXIES="127.0.0.1",
        )
        await add_supervisor(env)
        ports = [free_port() for _ in range(servers)]
        async with contextlib.AsyncExitStack() as running:
            for port in ports:
                await running.enter_async_context(serving(env, data, port))
            base = await running.enter_async_context(balancer(data, *ports))
            watching = asyncio.create_task(watcher.watch(base))
            counting = asyncio.create_task(spread(ports, samples))
            began = time.monotonic()
            until = began + minutes * 60
            url = base.replace("http", "ws", 1) + "/call"
            await asyncio.gather(*(caller(n, url, clips, until, tally) for n in range(callers)))
            elapsed = time.monotonic() - began
            await asyncio.sleep(3)  # the last ends reach the feed
            watching.cancel()
            counting.cancel()
            await asyncio.gather(watching, counting, return_exceptions=True)
        held = records(records_url, tally.answered, data / "recordings")

    def stats(name: str) -> dict[str, float]:
        return column(tally.turns, name)

    busiest = [max((row[i] for row in samples), default=0) for i in range(servers)]
    return {
        "machine": machine(),
        "servers": servers,
        "callers": callers,
        "minutes": round(elapsed / 60, 2),
        "calls": tally.calls,
        "turns": len(tally.turns),
        "end_of_speech_to_first_audio_ms": stats("first_audio"),
        "perceived_ms": stats("perceived"),
        "asr_after_end_of_speech_ms": stats("asr"),
        "errors": tally.errors,
        "refused": _refusals(tally.errors),
        "unexpected_closes": tally.closes,
        "audio_mismatches": tally.audio_mismatches,
        "most_calls_per_server": busiest,
        "most_calls_live_on_the_console": watcher.most,
        "calls_seen_on_the_console": len(watcher.seen),
        "records": held,
    }


def _refusals(errors: list[str]) -> dict[str, int]:
    """How many calls were refused, by whom and why: the balancer (every server marked full),
    a server's busy message (full as the caller came), a server's HTTP refusal."""
    kinds = {"busy message": "'code': 'busy'", "balancer": "by the balancer", "server": "by the"}
    counts = dict.fromkeys(kinds, 0)
    for error in errors:
        for kind, mark in kinds.items():
            if mark in error:
                counts[kind] += 1
                break
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--callers-per-server", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.servers, args.callers_per_server, args.minutes))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
