"""Bad callers on a real socket: each gets its documented error or close code, and the server
keeps serving every other call."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time

import aiohttp
import pytest

from tests.support.fakes import ScriptedAgent
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient

PCM16 = AudioFormat("pcm16", 16000)
START = {
    "type": "start",
    "version": 1,
    "audio": {"encoding": "pcm16", "sample_rate": 16000},
    "options": {"realtime_playback": False},
}


@pytest.fixture(scope="module")
async def url(serve):
    async with serve(ScriptedAgent(), call={"start_timeout_s": 1.0, "send_timeout_s": 1.0}) as url:
        yield url


async def raw_call(url, *messages, read_until_close=True):
    """Send `messages` (dict → JSON, str → text, bytes → binary); return (events, close code)."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        for message in messages:
            if isinstance(message, dict):
                await ws.send_json(message)
            elif isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_bytes(message)
        events = []
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                events.append(json.loads(frame.data))
                if not read_until_close and events[-1]["type"] == "reply.end":
                    await ws.send_json({"type": "hangup"})
        return events, ws.close_code


def errors(events):
    return [(e["code"], e["fatal"]) for e in events if e["type"] == "error"]


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (b"\x00\x00" * 160, "bad_start"),
        ("hello", "bad_start"),
        ({"type": "text", "text": "hi"}, "bad_start"),
        ({**START, "audio": {"encoding": "pcm16", "sample_rate": 44100}}, "unsupported_format"),
        ({**START, "audio": {"encoding": "mulaw", "sample_rate": 16000}}, "unsupported_format"),
        ({**START, "version": 7}, "unsupported_version"),
        ({**START, "language": "de"}, "unsupported_language"),
        ({**START, "language": "English please"}, "bad_start"),
    ],
)
async def test_a_wrong_first_message_closes_with_4400(url, first, code):
    events, close_code = await raw_call(url, first)
    assert close_code == 4400
    assert errors(events) == [(code, True)]
    assert events[-1] == {"type": "end", "reason": "error"}
    assert [e for e in events if e["type"] == "error"][0]["message"]


async def test_no_start_message_closes_with_4408(url):
    events, close_code = await raw_call(url)
    assert close_code == 4408
    assert errors(events) == [("start_timeout", True)]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (b"\x00" * 641, "odd_length_audio"),
        (b"\x00" * 3400, "frame_too_long"),
        (base64.b64encode(b"\x00" * 640).decode(), "bad_message"),
        ({"type": "dance"}, "unknown_type"),
        ({"type": "text", "text": ""}, "bad_message"),
        (START, "bad_message"),
    ],
)
async def test_a_bad_message_is_reported_and_the_call_goes_on(url, bad, code):
    events, close_code = await raw_call(
        url, START, bad, {"type": "text", "text": "is my bulb ok"}, read_until_close=False
    )
    assert errors(events) == [(code, False)]
    assert any(e["type"] == "reply.end" for e in events)
    assert close_code == 1000


async def test_an_oversize_frame_closes_with_1009(url):
    events, close_code = await raw_call(url, START, b"\x00" * (64 * 1024 + 2))
    assert close_code == 1009
    assert errors(events) == [("frame_too_big", True)]


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_caller_that_stops_reading_is_dropped_and_others_go_on(url):
    """The stalled caller asks for fast, 48 kHz replies and never reads a byte."""
    stalled = socket.socket()
    try:
        await _stall_and_check(url, stalled)
    finally:
        stalled.close()


async def _stall_and_check(url, stalled):
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(stalled, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        stalled,
        (
            f"GET /call HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    start = {
        **START,
        "audio": {"encoding": "pcm16", "sample_rate": 48000},
        "options": {"realtime_playback": False},
    }
    await loop.sock_sendall(stalled, _client_frame(0x1, json.dumps(start).encode()))
    question = _client_frame(0x1, b'{"type": "text", "text": "my bulb flashes red"}')
    health = url.replace("ws://", "http://").replace("/call", "/healthz")

    async def keep_asking() -> None:
        """Each reply is ~0.5 MB of audio, made in well under 2 s: a question every 2 s fills
        the socket buffers (megabytes) within a minute, however loaded the machine."""
        while True:
            try:
                await loop.sock_sendall(stalled, question)
            except OSError:  # the server dropped the connection
                return
            await asyncio.sleep(2.0)

    asking = asyncio.create_task(keep_asking())
    try:
        await asyncio.sleep(3)
        async with aiohttp.ClientSession() as session:
            async with session.get(health) as response:
                assert (await response.json())["calls"] == 1
            async with CallClient(url, PCM16, realtime_playback=False) as other:
                await other.send_text("is my bulb ok")
                end = await other.wait_for(lambda e: e["type"] == "reply.end", timeout=30)
            assert end["text"]
            for _ in range(900):
                async with session.get(health) as response:
                    if (await response.json())["calls"] == 0:
                        break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the stalled call was never closed")
    finally:
        asking.cancel()
        await asyncio.gather(asking, return_exceptions=True)


async def test_nothing_keeps_running_after_a_call(url):
    await asyncio.sleep(0.2)
    before = {task for task in asyncio.all_tasks() if not task.done()}
    async with CallClient(url, PCM16, realtime_playback=False) as call:
        await call.send_text("my bulb flashes red")
        await call.wait_for(lambda e: e["type"] == "reply.text", timeout=30)
    await asyncio.sleep(0.5)
    after = {task for task in asyncio.all_tasks() if not task.done()}
    leftover = [task for task in after - before if task is not asyncio.current_task()]
    assert leftover == []


async def test_pings_do_not_extend_the_start_timeout(url):
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        began = time.monotonic()

        async def keep_pinging():
            while not ws.closed:
                await ws.ping()
                await asyncio.sleep(0.3)

        pinger = asyncio.create_task(keep_pinging())
        async with asyncio.timeout(30):  # pings that reset the timeout keep it open for good
            events = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
        closed_after = time.monotonic() - began
        pinger.cancel()
        await asyncio.gather(pinger, return_exceptions=True)
    assert ws.close_code == 4408
    assert events[0]["code"] == "start_timeout"
    # The 1 s start timeout, not reset by the pings (one every 0.3 s would hold it open).
    assert closed_after < 5
