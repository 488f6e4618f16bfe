"""Load and soak: N callers speaking in real time at once to a real `voicedesk serve`.

    python bench/load.py [--callers 8] [--minutes 3] [--json out.json]
    python bench/load.py --callers 8 --minutes 10 --soak      # the 10-minute soak
    python bench/load.py --callers 8 --flood 10               # and one caller typing 10 a second

The server runs as its own process (`python -m voice.cli serve`, embedded models in worker
processes, the extractive backend), the callers in this one. Each caller makes calls of three
spoken questions (the bundled Piper voice, real time, the line carrying silence in between),
listens to each reply to its end, pauses 1-3 s, and hangs up; then calls again, until the time
is up. Callers start a second apart.

Reports per turn: end of speech → first reply audio (the server's `first_audio`) and what the
caller perceives (last voiced sample sent → first reply audio received), p50/p95/max; questions
unanswered, error events and unexpected closes; reply audio lost or misplaced (each turn's audio
received against its `reply.end.audio_ms`); stalls inside replies (the longest the caller's
playback ran dry after the first frame, `Turn.stall_ms`, and how far into the reply's audio,
`Turn.stall_at_ms`; each turn's row in the JSON has both, with the reply's text). With
--flood N one more caller types N questions a second on `/call` all the while (it is not
measured). Also the server's own
event-loop lag (`voicedesk_event_loop_lag_seconds`): a loop late by 300 ms is a gap in every
reply being sent. With --soak also: the server's memory (its process and its model workers)
every 10 s, growth from minute 2 and from minute 5 to the end, and asyncio tasks and open
files before the calls and after they all ended.

With --sip the callers call the server's SIP user agent instead (tests/support/sip_caller.py:
the same questions as 8 kHz G.711 μ-law RTP), and what is measured is what a SIP phone can
tell: perceived (last voiced packet sent → first packet of reply sound received), and questions
left without a reply. A reply is over once no sound came for `SIP_QUIET_S`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from latency import QUESTIONS, column, machine  # noqa: E402

from tests.support.sip_caller import SipCaller  # noqa: E402
from voice.channels.codecs import AudioFormat, int16_to_float, resample  # noqa: E402
from voice.clients.client import CallClient  # noqa: E402

PCM16 = AudioFormat("pcm16", 16000)
TURNS_PER_CALL = 3
STUCK_EVENTS = 30
"""Events of a stuck call kept for the report."""
SIP_QUIET_S = 1.5
"""A SIP caller takes the reply as over once no sound came for this long."""
SIP_REPLY_TIMEOUT_S = 15.0


@dataclass
class Tally:
    turns: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    """Error events and failed turns, in words."""
    closes: list[int | None] = field(default_factory=list)
    """Close codes of calls that did not end with 1000."""
    audio_mismatches: list[str] = field(default_factory=list)
    flood_sent: int = 0
    answered: dict[str, int] = field(default_factory=dict)
    """Questions answered, by call id."""
    handoffs: list[str] = field(default_factory=list)
    """Questions handed over to a person (misheard, say), which end the call."""
    stuck: dict[str, list[str]] = field(default_factory=dict)
    """Calls whose question got no reply in time: call id → the call's last events."""


class Server:
    """`voicedesk serve` in its own process on a free port."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.port: int | None = None
        self.sip_port: int | None = None
        self.log: list[str] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, data_dir: str, max_calls: int, sip: bool = False) -> Server:
        env = {
            **os.environ,
            "VOICEDESK_LLM": "extractive",
            "VOICEDESK_DATA_DIR": data_dir,
            "VOICEDESK_LIMITS_MAX_CALLS": str(max_calls),
        }
        if sip:
            env["VOICEDESK_SIP_LISTEN"] = "udp:127.0.0.1:0"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voice.cli", "serve", "--port", "0",
            env=env, cwd=data_dir, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        server = cls(process)
        deadline = time.monotonic() + 180
        while server.port is None or (sip and server.sip_port is None):
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start:\n" + "\n".join(server.log))
            await asyncio.sleep(0.2)
        return server

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            found = re.search(r"serving callers on ws://[\d.]+:(\d+)/call", line)
            if found:
                self.port = int(found.group(1))
            found = re.search(r"SIP: listening on \S+ \(port (\d+)\)", line)
            if found:
                self.sip_port = int(found.group(1))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/call"

    def open_files(self) -> set[str]:
        """What the server process has open (files, sockets, pipes), by what they point to."""
        found = set()
        for fd in Path(f"/proc/{self.process.pid}/fd").glob("*"):
            with contextlib.suppress(OSError):
                found.add(os.readlink(fd))
        return found

    def memory_mb(self) -> float:
        """Resident memory of the server and its worker processes."""
        return sum(_rss_kb(pid) for pid in _tree(self.process.pid)) / 1024

    def memory_by_process_mb(self) -> dict[str, float]:
        """The same per process, by what it holds: "server", "asr" (faster-whisper's native
        library mapped), "tts" (Piper's), or its pid (the resource tracker)."""
        return {_role(pid, self.process.pid): round(_rss_kb(pid) / 1024, 1)
                for pid in _tree(self.process.pid)}  # fmt: skip

    async def _samples(self) -> list[Sample]:
        """Every sample of the server's `/metrics`."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            text = await response.text()
        return [s for family in text_string_to_metric_families(text) for s in family.samples]

    async def gauges(self) -> dict[str, float]:
        wanted = ("voicedesk_asyncio_tasks", "process_open_fds", "voicedesk_calls_active")
        found: dict[str, float] = {}
        for sample in await self._samples():
            if sample.name in wanted:
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
        return found

    async def loop_lag(self) -> dict[str, float]:
        """The server's event-loop lag so far: timer checks (every 100 ms) late by more than
        each bucket's bound, and their count."""
        found = {
            sample.labels["le"]: sample.value
            for sample in await self._samples()
            if sample.name == "voicedesk_event_loop_lag_seconds_bucket"
        }
        total = found.pop("+Inf", 0.0)
        return {"checks": total} | {f"over_{le}_s": total - n for le, n in found.items()}

    async def stop(self) -> int:
        self.process.terminate()
        code = await asyncio.wait_for(self.process.wait(), 90)
        await self.reader
        return code


def _role(pid: int, server: int) -> str:
    """Which of the server's processes `pid` is: told by the libraries it has mapped, never
    by the order the processes are listed in (which once had the two workers swapped)."""
    if pid == server:
        return "server"
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return str(pid)
    if "libctranslate2" in maps:
        return "asr"
    if "espeakbridge" in maps or "/piper/" in maps:
        return "tts"
    return str(pid)


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return pids


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def make_clips(kept: Path | None = None) -> dict[str, np.ndarray]:
    """Each question spoken by the bundled voice, 16 kHz float32, with 300 ms of lead.

    The voice samples its noise, so each run says the questions a little differently, and
    where recognition doubts a pause changes with that: `kept` (an .npz file) keeps the
    recordings of the first run that names it for every run after, to compare code on the
    same speech."""
    if kept is not None and kept.exists():
        with np.load(kept) as saved:
            if list(saved["questions"]) != QUESTIONS:
                raise SystemExit(f"{kept} holds other questions than this benchmark asks")
            return {question: saved[f"q{n}"] for n, question in enumerate(QUESTIONS)}
    clips = _spoken()
    if kept is not None:
        recordings = {f"q{n}": clips[question] for n, question in enumerate(QUESTIONS)}
        np.savez(kept, questions=np.array(QUESTIONS), **recordings)
    return clips


def _spoken() -> dict[str, np.ndarray]:
    from tts.piper import Synthesizer
    from tts.settings import TtsSettings

    voice = Synthesizer(TtsSettings())
    clips = {}
    for question in QUESTIONS:
        audio = int16_to_float(voice.synthesize_blocking(question))
        speech = resample(audio, voice.sample_rate, 16000).astype(np.float32)
        clips[question] = np.concatenate([np.zeros(4800, np.float32), speech])
    voice.close()
    return clips


async def caller(
    number: int, url: str, clips: dict[str, np.ndarray], until: float, tally: Tally
) -> None:
    rng = random.Random(number)
    await asyncio.sleep(number * 1.0)
    while time.monotonic() < until:
        try:
            async with CallClient(url, PCM16) as call:
                tally.calls += 1
                tally.answered[call.call_id] = 0
                for _ in range(TURNS_PER_CALL):
                    if time.monotonic() >= until:
                        break
                    question = rng.choice(QUESTIONS)
                    try:
                        turn = await call.ask(clips[question], realtime=True, timeout=120)
                    except TimeoutError:
                        tally.stuck[call.call_id] = [_brief(e) for e in call.events[-STUCK_EVENTS:]]
                        raise
                    _check(turn, question, tally)
                    tally.answered[call.call_id] += 1
                    if turn.handoff:  # the caller waits for a person now: the call is over
                        tally.handoffs.append(f"{question!r} heard as {turn.transcript!r}")
                        break
                    await asyncio.sleep(rng.uniform(1, 3))
            tally.errors += [
                f"caller {number}: {e['code']}" for e in call.events if e["type"] == "error"
            ]
            if call.close_code != 1000:
                tally.closes.append(call.close_code)
                await asyncio.sleep(1.0)  # busy, say: a caller dials again a moment later
        except aiohttp.WSServerHandshakeError as err:
            kind = (err.headers or {}).get("Content-Type", "")  # HAProxy's own pages are HTML
            by = "the balancer" if kind.startswith("text/html") else "the server"
            tally.errors.append(f"caller {number}: refused by {by} with HTTP {err.status}")
            await asyncio.sleep(1.0)
        except (TimeoutError, ConnectionError, aiohttp.ClientError) as err:
            tally.errors.append(f"caller {number}: {err!r}")
            await asyncio.sleep(1.0)


async def sip_caller(
    number: int, port: int, clips: dict[str, np.ndarray], until: float, tally: Tally
) -> None:
    """`caller`, over SIP: the questions at 8 kHz as RTP; a reply's start and end are told by
    sound in the packets."""
    rng = random.Random(number)
    await asyncio.sleep(number * 1.0)
    while time.monotonic() < until:
        try:
            async with SipCaller("127.0.0.1", port, f"+1555{number:07d}") as call:
                tally.calls += 1
                for _ in range(TURNS_PER_CALL):
                    if time.monotonic() >= until:
                        break
                    question = rng.choice(QUESTIONS)
                    last_voiced = await call.say(resample(clips[question], 16000, 8000))
                    begun = await _sound_after(call, last_voiced, SIP_REPLY_TIMEOUT_S)
                    if begun is None:
                        tally.errors.append(f"caller {number}: no reply to {question!r}")
                        continue
                    await _quiet_for(call, SIP_QUIET_S)
                    perceived = round((begun - last_voiced) * 1000)
                    tally.turns.append({"question": question, "perceived": perceived})
                    await asyncio.sleep(rng.uniform(1, 3))
        except (TimeoutError, ConnectionError, OSError) as err:
            tally.errors.append(f"caller {number}: {err!r}")
            await asyncio.sleep(1.0)


async def _sound_after(call: SipCaller, since: float, timeout: float) -> float | None:
    """When the first packet of sound after `since` arrived (None after `timeout` s)."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        arrivals = call.received.arrivals
        if arrivals and arrivals[-1] > since:
            return next(at for at in arrivals if at > since)
        await asyncio.sleep(0.01)
    return None


async def _quiet_for(call: SipCaller, quiet_s: float) -> None:
    """Return once no sound has come for `quiet_s`."""
    # Packets arrive 50 a second whether they hold sound or not: polled, nothing to wait on.
    while time.monotonic() - call.received.arrivals[-1] < quiet_s:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def _brief(event: dict[str, Any]) -> str:
    """An event of a call in a line, for a call that got stuck."""
    said = {k: v for k, v in event.items() if k in ("turn", "text", "reason", "code", "ignored")}
    return f"{event['type']} {json.dumps(said)}"


def _check(turn: Any, question: str, tally: Tally) -> None:
    received_ms = len(turn.audio) // PCM16.bytes_per_sample * 1000 // PCM16.sample_rate
    if turn.ignored or not turn.reply:
        tally.errors.append(f"unanswered: {question!r} heard as {turn.transcript!r}")
    if abs(received_ms - turn.audio_ms) > 1:
        tally.audio_mismatches.append(f"turn {turn.turn}: {received_ms} ms of {turn.audio_ms}")
    tally.turns.append(
        {"question": question, "transcript": turn.transcript, "audio_ms": turn.audio_ms,
         "stall": turn.stall_ms, "stall_at": turn.stall_at_ms, "reply": turn.reply,
         **turn.timings_ms}
    )  # fmt: skip


async def flooder(url: str, per_s: float, until: float, tally: Tally) -> None:
    """One caller typing `per_s` questions a second until `until`, ignoring the replies (played
    in real time, the protocol's default)."""
    await asyncio.sleep(2.0)
    number = 0
    try:
        async with CallClient(url, PCM16) as call:
            while time.monotonic() < until:
                number += 1
                await call.send_text(QUESTIONS[number % len(QUESTIONS)].lower())
                await asyncio.sleep(1 / per_s)
        tally.flood_sent = number
    except (ConnectionError, aiohttp.ClientError) as err:
        tally.errors.append(f"flooder: {err!r}")


async def run(
    callers: int,
    minutes: float,
    soak: bool,
    flood: float = 0.0,
    sip: bool = False,
    recordings: Path | None = None,
) -> dict[str, Any]:
    clips = make_clips(recordings)
    with tempfile.TemporaryDirectory() as data_dir:
        server = await Server.start(data_dir, max_calls=callers + (1 if flood else 0), sip=sip)
        try:
            await asyncio.sleep(2)
            before, files_before = await server.gauges(), server.open_files()
            tally = Tally()
            began = time.monotonic()
            until = began + minutes * 60
            memory: list[tuple[float, float]] = []
            by_process: list[tuple[float, dict[str, float]]] = []

            async def sample() -> None:
                while True:
                    at = round(time.monotonic() - began)
                    memory.append((at, server.memory_mb()))
                    by_process.append((at, server.memory_by_process_mb()))
                    await asyncio.sleep(10)

            sampler = asyncio.create_task(sample())
            flooding = [flooder(server.url, flood, until, tally)] if flood else []
            if sip:
                assert server.sip_port is not None
                calling = [
                    sip_caller(n, server.sip_port, clips, until, tally) for n in range(callers)
                ]
            else:
                calling = [caller(n, server.url, clips, until, tally) for n in range(callers)]
            await asyncio.gather(*calling, *flooding)
            sampler.cancel()
            memory.append((round(time.monotonic() - began), server.memory_mb()))
            for _ in range(30):  # closing sockets settle within seconds
                await asyncio.sleep(1)
                left = server.open_files() - files_before
                if not left:
                    break
            after = await server.gauges()
            lag = await server.loop_lag()
        finally:
            code = await server.stop()

    for row in tally.turns:
        if None not in (row.get("first_audio"), row.get("first_text"), row.get("asr")):
            row["answer"] = row["first_text"] - row["asr"]
            row["speech"] = row["first_audio"] - row["first_text"]

    def stats(name: str) -> dict[str, float]:
        return column(tally.turns, name)

    result: dict[str, Any] = {
        "machine": machine(),
        "callers": callers,
        "path": "sip" if sip else "call",
        "minutes": minutes,
        "calls": tally.calls,
        "turns": len(tally.turns),
        "end_of_speech_to_first_audio_ms": stats("first_audio"),
        "perceived_ms": stats("perceived"),
        "asr_after_end_of_speech_ms": stats("asr"),
        "answer_first_text_ms": stats("answer"),
        "tts_first_audio_ms": stats("speech"),
        "stall_in_reply_ms": stats("stall"),
        "replies_with_a_stall_over_200_ms": sum(1 for t in tally.turns if t.get("stall", 0) > 200),
        "event_loop_lag": lag,
        "flood_per_s": flood,
        "flood_questions_sent": tally.flood_sent,
        "errors": tally.errors,
        "handoffs": tally.handoffs,
        "unexpected_closes": tally.closes,
        "audio_mismatches": tally.audio_mismatches,
        "server_exit_code": code,
        "settings": {k: v for k, v in os.environ.items() if k.startswith("VOICEDESK_")},
        "rows": tally.turns,
        "stuck": {
            call_id: {"events": events, "server_log": [ln for ln in server.log if call_id in ln]}
            for call_id, events in tally.stuck.items()
        },
    }
    if soak:
        at_2 = next((mb for t, mb in memory if t >= 120), memory[0][1])
        at_5 = next((mb for t, mb in memory if t >= 300), memory[0][1])
        end = memory[-1][1]
        result |= {
            "memory_mb": memory,
            "memory_by_process_mb": by_process,
            "memory_growth_after_minute_2": (end - at_2) / at_2,
            "memory_growth_after_minute_5": (end - at_5) / at_5,
            "before_calls": before,
            "after_calls": after,
            "files_left_open": sorted(left),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--soak", action="store_true", help="also track memory, tasks and files")
    parser.add_argument(
        "--flood",
        type=float,
        default=0.0,
        help="one more caller typing this many questions a second",
    )
    parser.add_argument("--sip", action="store_true", help="the callers call over SIP")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--recordings",
        type=Path,
        help="an .npz file: the questions' recordings are kept there, and said again from it",
    )
    args = parser.parse_args()
    result = asyncio.run(
        run(args.callers, args.minutes, args.soak, args.flood, args.sip, args.recordings)
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    summary = {
        k: v for k, v in result.items() if k not in ("memory_mb", "memory_by_process_mb", "rows")
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
