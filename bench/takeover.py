"""What the server adds to a person's voice on a call they took over, and to the caller's voice
on its way to them: a real `voicedesk serve` (its own process, embedded models, the extractive
backend), a caller on `/call` and a supervisor on the call's audio websocket, both in this
process on the same machine.

    python bench/takeover.py [--clicks 100] [--busy 3] [--json out.json]

The caller asks for a person (keypad 0), the supervisor logs in, takes the call and opens its
audio websocket. Then both send their audio in real time, 20 ms frames, silence with a click (a
20 ms burst of tone) every `CLICK_EVERY_S`, the supervisor and the caller in turn:
- supervisor → caller: from the click frame's send on the audio websocket to the caller
  receiving the first frame of it (resampled and encoded in the caller's format);
- caller → supervisor: from the click frame's send on `/call` to the supervisor receiving it.
Both ends' clocks are this process's, so the time is what the server adds, plus two loopback
hops. Run for a 16 kHz PCM caller and an 8 kHz μ-law caller (a phone line's format), with the
server idle and with `--busy` other callers asking spoken questions all the while (real speech
recognition and synthesis on the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from latency import QUESTIONS, machine, percentile  # noqa: E402
from load import Server, make_clips  # noqa: E402

from tests.support.supervisor import Supervisor  # noqa: E402
from voice.channels.codecs import AudioFormat, float_to_int16, int16_to_float  # noqa: E402
from voice.clients.client import CallClient  # noqa: E402
from voice.office.auth import Users  # noqa: E402
from voice.office.tap import CALLER  # noqa: E402

NAME, PASSWORD = "bench", "a bench supervisor's password"
FRAME_S = 0.02
CLICK_EVERY_S = 0.5
CLICK_LEVEL = 0.5
"""The click's peak, of full scale; silence is 0. A frame is a click's when its peak is over
`HEARD_LEVEL` (the resampler spreads a click over its neighbours, far below that)."""
HEARD_LEVEL = 0.1
FORMATS = {"pcm16_16k": AudioFormat("pcm16", 16000), "mulaw_8k": AudioFormat("mulaw", 8000)}


def click_frames(rate: int, clicks: int) -> tuple[list[np.ndarray], list[int]]:
    """20 ms float32 frames at `rate`: silence with a click every `CLICK_EVERY_S`, and the
    indexes of the click frames."""
    step = round(rate * FRAME_S)
    every = round(CLICK_EVERY_S / FRAME_S)
    t = np.arange(step) / rate
    click = (CLICK_LEVEL * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    silence = np.zeros(step, np.float32)
    frames, marks = [], []
    for index in range(clicks * every):
        if index % every == every // 2:
            frames.append(click)
            marks.append(index)
        else:
            frames.append(silence)
    return frames, marks


async def paced(frames: list[np.ndarray], send: Any, marks: list[int]) -> list[float]:
    """Send `frames` at the pace they play; returns the send time of each marked frame."""
    sent_at: list[float] = []
    started = time.monotonic()
    wanted = set(marks)
    for index, frame in enumerate(frames):
        await asyncio.sleep(max(0.0, started + index * FRAME_S - time.monotonic()))
        if index in wanted:
            sent_at.append(time.monotonic())
        await send(frame)
    return sent_at


def arrivals(received: list[tuple[float, np.ndarray]], since: float) -> list[float]:
    """When each click arrived: the first loud frame after a quiet one."""
    found, loud = [], False
    for at, samples in received:
        if at < since:
            continue
        peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
        if peak > HEARD_LEVEL and not loud:
            found.append(at)
        loud = peak > HEARD_LEVEL
    return found


def delays(sent: list[float], came: list[float]) -> list[float]:
    """Each click's delay in ms: matched to the first arrival after it was sent."""
    out, j = [], 0
    for at in sent:
        while j < len(came) and came[j] < at:
            j += 1
        if j < len(came) and came[j] - at < CLICK_EVERY_S:
            out.append((came[j] - at) * 1000)
            j += 1
    return out


async def busy_caller(url: str, clips: dict[str, np.ndarray], stop: asyncio.Event) -> int:
    """Ask spoken questions, one after another, until `stop`; returns how many were answered."""
    rng, answered = random.Random(7), 0
    while not stop.is_set():
        async with CallClient(url, FORMATS["pcm16_16k"]) as call:
            for _ in range(3):
                if stop.is_set():
                    break
                turn = await call.ask(clips[rng.choice(QUESTIONS)], realtime=True, timeout=120)
                answered += bool(turn.reply)
    return answered


async def measure(server: Server, audio: AudioFormat, clicks: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{server.port}"
    async with (
        aiohttp.ClientSession() as http,
        CallClient(server.url, audio, keep_audio=True) as call,
    ):
        async with http.post(
            base + "/api/login", json={"name": NAME, "password": PASSWORD}
        ) as response:
            token = (await response.json())["token"]
        person = Supervisor(http, base, token)
        await call.send_key("0")
        await call.wait_for(lambda e: e["type"] == "hold" and e["state"] == "waiting", timeout=60)
        status, _ = await person.post(f"/api/calls/{call.call_id}/take")
        assert status == 200
        await call.wait_for(lambda e: e["type"] == "hold" and e["state"] == "person")
        async with person.audio(call.call_id) as ears:
            await asyncio.sleep(1.0)
            frames16, marks = click_frames(16000, clicks)

            async def speak(frame: np.ndarray) -> None:
                await ears.ws.send_bytes(float_to_int16(frame).astype("<i2").tobytes())

            began = time.monotonic()
            sent = await paced(frames16, speak, marks)
            await asyncio.sleep(1.0)
            assert call.received is not None
            heard = [(at, int16_to_float(audio.decode(data))) for at, data in call.received]
            to_caller = delays(sent, arrivals(heard, began))

            frames, marks = click_frames(audio.sample_rate, clicks)

            async def say(frame: np.ndarray) -> None:
                await call.send_audio(frame, realtime=False)

            began = time.monotonic()
            sent = await paced(frames, say, marks)
            await asyncio.sleep(1.0)
            got = [
                (at, int16_to_float(np.frombuffer(data, "<i2")))
                for at, kind, data in ears.frames
                if kind == CALLER
            ]
            to_person = delays(sent, arrivals(got, began))
    return {
        "supervisor_to_caller_ms": stats(to_caller, clicks),
        "caller_to_supervisor_ms": stats(to_person, clicks),
    }


def stats(values: list[float], clicks: int) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "max": round(max(values, default=float("nan")), 1),
        "heard": len(values),
        "sent": clicks,
    }


async def run(clicks: int, busy: int) -> dict[str, Any]:
    clips = make_clips() if busy else {}
    results: dict[str, Any] = {"machine": machine(), "clicks": clicks, "busy_callers": busy}
    with tempfile.TemporaryDirectory() as data_dir:
        users = Users(Path(data_dir) / "voicedesk.db")
        users.add(NAME, PASSWORD)
        users.close()
        server = await Server.start(data_dir, max_calls=busy + 2)
        try:
            await asyncio.sleep(2)
            for name, audio in FORMATS.items():
                results[f"idle_{name}"] = await measure(server, audio, clicks)
            if busy:
                stop = asyncio.Event()
                talking = [
                    asyncio.create_task(busy_caller(server.url, clips, stop)) for _ in range(busy)
                ]
                await asyncio.sleep(5)
                for name, audio in FORMATS.items():
                    results[f"busy_{name}"] = await measure(server, audio, clicks)
                stop.set()
                answered = await asyncio.gather(*talking)
                results["busy_questions_answered"] = sum(answered)
        finally:
            results["server_exit_code"] = await server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clicks", type=int, default=100, help="clicks each way, per run")
    parser.add_argument("--busy", type=int, default=3, help="other callers asking questions")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.clicks, args.busy))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
