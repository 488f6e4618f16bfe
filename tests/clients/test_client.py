"""The caller's client without models: how fast its fast mode sends, against a stand-in server
on a loopback socket and a fake clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from voice.channels.codecs import AudioFormat
from voice.clients.client import FAST_FRAME_MS, CallClient, Pacer
from voice.config import CallSettings
from voice.ops.admission import MessageRate

PCM16 = AudioFormat("pcm16", 16000)


class FakeClock:
    """Time that passes only when the pacer sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class StandIn:
    """Answers `start` with `ready` and notes each audio message: (fake time, bytes)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.audio: list[tuple[float, int]] = []

    async def call(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive_json()
        await ws.send_json({"type": "ready", "call_id": "c", "version": 1, "audio": {}})
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                self.audio.append((self.clock(), len(message.data)))
            elif json.loads(message.data)["type"] == "hangup":
                await ws.send_json({"type": "end", "reason": "hangup"})
                await ws.close()
        return ws


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[str, StandIn]]:
    peer = StandIn(FakeClock())
    app = web.Application()
    app.router.add_get("/call", peer.call)
    async with TestServer(app) as server:
        yield str(server.make_url("/call")).replace("http://", "ws://"), peer


async def test_the_fast_mode_keeps_within_the_servers_default_message_rate(stand_in):
    url, peer = stand_in
    clock = peer.clock
    question = np.zeros(10 * PCM16.sample_rate, np.float32)  # what --fast used to send as 500
    async with CallClient(url, PCM16, pacer=Pacer(clock=clock, sleep=clock.sleep)) as call:
        await call.send_audio(question, realtime=False)
        await call.send_silence(1500)
    assert len(peer.audio) == 115
    assert all(size <= PCM16.frame_bytes(FAST_FRAME_MS) for _, size in peer.audio)
    limits = CallSettings()
    at = [0.0]
    server = MessageRate(limits.max_messages_per_s, limits.burst_s, clock=lambda: at[0])
    for at[0], _ in peer.audio:
        assert server.take(), at[0]
    assert clock.now < 11.5 / 5  # much faster than real time


async def test_the_pacer_waits_out_its_rate_after_a_burst():
    clock = FakeClock()
    pacer = Pacer(per_s=10, burst_s=1, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(15):
        await pacer.wait()
        times.append(clock.now)
    assert times[:10] == [0.0] * 10
    assert times[10:] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-4)


async def test_speech_queued_on_a_line_that_goes_down_fails_instead_of_waiting():
    from voice.clients.client import SpokenLine

    line = SpokenLine(8000)
    sent = 0

    async def send(frame: np.ndarray) -> None:
        nonlocal sent
        sent += 1
        if sent == 3:
            raise ConnectionResetError("the far end went away")

    speech = line.say(np.full(8000, 0.5, np.float32))
    await asyncio.wait_for(line.run(send), 5)
    with pytest.raises(ConnectionError, match="went away"):
        await asyncio.wait_for(speech, 1)
    with pytest.raises(ConnectionError, match="the line is down"):
        await line.say(np.full(800, 0.5, np.float32))


async def test_a_line_held_up_goes_on_in_real_time_rather_than_bursting():
    from voice.clients.client import FRAME_MS, SpokenLine

    line = SpokenLine(8000)
    sent_at: list[float] = []
    loop = asyncio.get_running_loop()

    async def send(frame: np.ndarray) -> None:
        sent_at.append(loop.time())
        if len(sent_at) == 3:
            await asyncio.sleep(1.0)  # the machine was busy for a second
        if len(sent_at) == 30:
            raise ConnectionResetError("done")

    await asyncio.wait_for(line.run(send), 10)
    after = [t - sent_at[2] for t in sent_at[3:]]
    burst = sum(1 for t in after if t < 1.0 + 2 * FRAME_MS / 1000)
    assert burst <= 3, f"{burst} frames sent at once after the hold-up"


def test_a_reply_stall_is_measured_where_the_callers_playback_ran_dry(monkeypatch):
    """What `bench/load.py` reports as stalls: a frame that came after the audio before it had
    played out, how late and how far into the reply."""
    from voice.clients import client as client_module

    client = CallClient("ws://unused", AudioFormat("pcm16", 16000))
    client._on_event({"type": "transcript.final", "turn": 1, "text": "hello"})
    arrivals = iter((10.0, 10.05, 10.1, 10.55, 10.7))  # 300 ms sent at once, the rest late
    monkeypatch.setattr(client_module.time, "monotonic", lambda: next(arrivals))
    frame = bytes(3200)  # 100 ms
    for _ in range(5):
        client._on_audio(frame)
    turn = client.turns[1]
    assert (turn.stall_ms, turn.stall_at_ms) == (250, 300)
