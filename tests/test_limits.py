"""Admission and the per-connection limits, on a real socket: a caller beyond the line limit hears
the busy message and is closed with 1013 while the calls in progress go on; idle, flooding and
over-long callers are closed with their documented codes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest

from tests.fakes import ScriptedAgent
from tests.test_bad_input import START
from voice.admission import Admission, MessageRate
from voice.carrier import SimulatedCarrier
from voice.client import CallClient
from voice.codecs import AudioFormat

PCM16 = AudioFormat("pcm16", 16000)


async def read_all(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict], bytes]:
    events, audio = [], bytearray()
    async with asyncio.timeout(30):
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                events.append(message.json())
            elif message.type == aiohttp.WSMsgType.BINARY:
                audio.extend(message.data)
    return events, bytes(audio)


async def metrics(url: str) -> str:
    address = url.replace("ws://", "http://").replace("/call", "/metrics")
    async with aiohttp.ClientSession() as http, http.get(address) as response:
        return await response.text()


async def test_a_caller_beyond_the_limit_hears_the_busy_message_and_is_closed(serve):
    async with serve(ScriptedAgent(), limits={"max_calls": 1}) as url:
        async with CallClient(url, PCM16, realtime_playback=False) as first:
            async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
                began = time.monotonic()
                await ws.send_json({**START, "options": {"realtime_playback": True}})
                events, audio = await read_all(ws)
                took = time.monotonic() - began
            await first.send_text("is my bulb ok")
            end = await first.wait_for(lambda e: e["type"] == "reply.end", timeout=30)
        text = await metrics(url)
    assert ws.close_code == 1013
    assert [e["type"] for e in events] == ["error", "end"]
    assert events[0]["code"] == "busy" and events[0]["fatal"]
    assert "lines are busy" in events[0]["message"]
    assert events[1]["reason"] == "busy"
    seconds = len(audio) / 2 / 16000
    assert seconds > 1.5, "the busy message was sent as audio"
    assert took >= seconds - 0.2, "the connection stayed open while the message played"
    assert end["text"] and end["turn"] == 1, "the call in progress went on"
    assert 'voicedesk_calls_refused_total{reason="busy"} 1.0' in text


async def test_a_line_frees_up_when_a_call_ends(serve):
    async with serve(ScriptedAgent(), limits={"max_calls": 1}) as url:
        for _ in range(3):
            async with CallClient(url, PCM16, realtime_playback=False) as call:
                await call.send_text("hello")
                await call.wait_for(lambda e: e["type"] == "reply.end", timeout=30)


async def test_a_phone_caller_beyond_the_limit_hears_busy_and_the_stream_closes(serve):
    async with serve(ScriptedAgent(), limits={"max_calls": 1}) as url:
        phone = url.replace("/call", "/twilio")
        async with (
            CallClient(url, PCM16, realtime_playback=False),
            SimulatedCarrier(phone) as carrier,
        ):
            await carrier.wait_until(lambda: carrier.closed_at is not None, timeout=30)
    assert carrier.close_code == 1013
    assert carrier.played_ms() > 1500
    assert carrier.marks_received and all(e.played for e in carrier.echoes)
    assert carrier.echoes[-1].at <= carrier.closed_at


async def test_an_idle_caller_is_closed(serve):
    async with (
        serve(ScriptedAgent(), call={"idle_timeout_s": 0.5}) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(url) as ws,
    ):
        await ws.send_json(START)
        began = time.monotonic()
        events, _ = await read_all(ws)
    assert ws.close_code == 4410
    assert time.monotonic() - began < 5
    error = next(e for e in events if e["type"] == "error")
    assert error["code"] == "idle_timeout" and error["fatal"]
    assert events[-1] == {"type": "end", "reason": "idle_timeout"}


async def test_a_caller_that_floods_messages_is_closed(serve):
    limits = {"max_messages_per_s": 50.0, "burst_s": 1.0}
    async with serve(ScriptedAgent(), call=limits) as url:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_json(START)
            frame = np.zeros(320, np.int16).tobytes()  # 20 ms
            for _ in range(300):
                await ws.send_bytes(frame)
            events, _ = await read_all(ws)
        async with CallClient(url, PCM16, realtime_playback=False) as other:
            await other.send_text("still there?")
            await other.wait_for(lambda e: e["type"] == "reply.end", timeout=30)
    assert ws.close_code == 4429
    assert any(e.get("code") == "too_many_messages" for e in events)


async def test_a_call_past_its_longest_is_ended(serve):
    async with (
        serve(ScriptedAgent(), call={"max_call_s": 1.0}) as url,
        CallClient(url, PCM16, realtime_playback=False) as call,
    ):
        began = time.monotonic()
        await call.speak(np.zeros(16000 * 3, np.float32))
        await call.wait_for(lambda e: e["type"] == "end", timeout=10)
        took = time.monotonic() - began
    assert call.close_code == 4413
    assert 0.8 < took < 5
    assert any(e.get("code") == "call_too_long" for e in call.events)
    assert call.events[-1] == {"type": "end", "reason": "max_duration"}


def test_admission_counts_lines():
    admission = Admission(max_calls=2)
    assert admission.admit() and admission.admit()
    assert not admission.admit()
    admission.release()
    assert admission.admit()
    admission.draining = True
    admission.release()
    assert not admission.admit()


@pytest.mark.parametrize(
    ("gaps", "taken"),
    [
        ([0.0] * 25, 20),  # a burst: the bucket's capacity (10/s × 2 s), then refusals
        ([0.1] * 25, 25),  # exactly the rate: always taken
        ([0.0] * 20 + [1.0] + [0.0] * 12, 30),  # a second later, ten more are allowed
    ],
)
def test_message_rate(gaps, taken):
    now = [0.0]
    rate = MessageRate(per_s=10, burst_s=2, clock=lambda: now[0])
    count = 0
    for gap in gaps:
        now[0] += gap
        count += rate.take()
    assert count == taken


def test_message_rate_says_how_long_to_wait():
    now = [0.0]
    rate = MessageRate(per_s=10, burst_s=1, clock=lambda: now[0])
    assert rate.wait_s() == 0.0
    while rate.take():
        pass
    assert rate.wait_s() == pytest.approx(0.1, abs=1e-5)
    now[0] += 0.04
    wait = rate.wait_s()
    assert wait == pytest.approx(0.06, abs=1e-5)
    now[0] += wait
    assert rate.wait_s() == 0.0 and rate.take() and not rate.take()


async def test_a_message_too_big_is_refused_before_it_is_parsed(serve):
    async with serve(ScriptedAgent(), call={"max_frame_bytes": 4096}) as url:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_json({**START, "metadata": {"junk": "x" * 5000}})
            events, _ = await read_all(ws)
        assert ws.close_code == 1009 and events[0]["code"] == "frame_too_big"
        phone = url.replace("/call", "/twilio")
        async with aiohttp.ClientSession() as http, http.ws_connect(phone) as ws:
            await ws.send_json({"event": "connected", "padding": "x" * 5000})
            await read_all(ws)
        assert ws.close_code == 1009


async def test_connections_that_never_start_are_bounded(serve):
    async with (
        serve(ScriptedAgent(), limits={"max_waiting": 2}) as url,
        aiohttp.ClientSession() as http,
    ):
        idle = [await http.ws_connect(url) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 503
        await idle[0].send_json(START)  # one starts: a place frees up
        await idle[0].receive_json(timeout=10)
        third = await http.ws_connect(url)
        for ws in (*idle, third):
            await ws.close()
