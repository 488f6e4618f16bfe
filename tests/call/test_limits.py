"""Admission and the per-connection limits, on a real socket: a caller beyond the line limit hears
the busy message and is closed with 1013 while the calls in progress go on; idle, flooding and
over-long callers are closed with their documented codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

import aiohttp
import numpy as np
import pytest

from tests.call.test_bad_input import START
from tests.support.carrier import SimulatedCarrier
from tests.support.fakes import ScriptedAgent
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient
from voice.ops.admission import Admission, MessageRate

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
    async with serve(ScriptedAgent(), call={"max_call_s": 1.0}) as url:
        began = time.monotonic()  # before the call starts: it cannot end sooner than 1 s after
        async with CallClient(url, PCM16, realtime_playback=False) as call:
            await call.speak(np.zeros(16000 * 3, np.float32))
            await call.wait_for(lambda e: e["type"] == "end", timeout=10)
            took = time.monotonic() - began
    assert call.close_code == 4413
    assert 0.95 < took < 5
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


async def test_a_message_over_the_hard_limit_is_logged_as_what_the_caller_got(serve, caplog):
    """Over 1 MiB the websocket layer closes with 1009 itself; the log and the record say so
    too, at the start and in the middle of a call, on both dialects."""
    caplog.set_level(logging.INFO, logger="voice")
    huge = "x" * (1 << 20)
    async with serve(ScriptedAgent()) as url, aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            await ws.send_json({**START, "metadata": {"junk": huge}})
            await read_all(ws)
        assert ws.close_code == 1009
        async with CallClient(url, PCM16, realtime_playback=False) as call:
            await call._ws.send_str(huge)  # type: ignore[union-attr]
            with pytest.raises(ConnectionError):  # the server closes the call
                await call.wait_for(lambda e: False, timeout=10)
        assert call.close_code == 1009
        async with http.ws_connect(url.replace("/call", "/twilio")) as ws:
            await ws.send_json({"event": "connected", "padding": huge})
            await read_all(ws)
        assert ws.close_code == 1009
    ended = [r.getMessage() for r in caplog.records if r.getMessage().startswith("call ended")]
    assert ended == ["call ended: error (close 1009)"] * 3, ended
    assert "frame_too_big" in caplog.text


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


async def test_strangers_holding_the_waiting_room_do_not_keep_out_a_caller_with_a_token(serve):
    """The attack: idle websockets, reopened as they are closed, hold every slot for
    connections that have not started. A caller with a token in its header still gets in;
    one without a token, on the same address as the strangers, does not."""
    limits = {"max_waiting": 4, "max_waiting_per_address": 4}
    async with (
        serve(ScriptedAgent(), limits=limits, auth={"caller_tokens": "s3cret"}) as url,
        aiohttp.ClientSession() as http,
    ):
        strangers = [await http.ws_connect(url) for _ in range(4)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 503
        async with CallClient(url, PCM16, token="s3cret", realtime_playback=False) as caller:
            await caller.send_text("is my bulb ok")
            end = await caller.wait_for(lambda e: e["type"] == "reply.end", timeout=30)
        assert end["text"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as wrong:
            await http.ws_connect(url, headers={"Authorization": "Bearer guess"})
        assert wrong.value.status == 401, "a wrong token is refused before it takes a slot"
        for ws in strangers:
            await ws.close()


async def test_one_address_cannot_take_the_whole_waiting_room(serve):
    limits = {"max_waiting": 8, "max_waiting_per_address": 2}
    async with serve(ScriptedAgent(), limits=limits) as url, aiohttp.ClientSession() as http:
        mine = [await http.ws_connect(url) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 503
        body = await metrics(url)
        for ws in mine:
            await ws.close()
    assert 'voicedesk_calls_refused_total{reason="too_many_waiting"} 1.0' in body


async def test_behind_a_trusted_proxy_the_waiting_room_counts_its_clients(serve):
    """Through a balancer every connection comes from its address: with it trusted, each
    client it forwards has the room's places per address, and a call still goes through."""
    limits = {"max_waiting": 8, "max_waiting_per_address": 2}
    server = {"trusted_proxies": "127.0.0.1"}
    async with (
        serve(ScriptedAgent(), limits=limits, server=server) as url,
        aiohttp.ClientSession() as http,
    ):
        one = {"X-Forwarded-For": "203.0.113.7"}
        mine = [await http.ws_connect(url, headers=one) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers=one)
        assert refused.value.status == 503
        async with http.ws_connect(url, headers={"X-Forwarded-For": "198.51.100.20"}) as ws:
            await ws.send_json(START)
            assert (await ws.receive_json(timeout=10))["type"] == "ready"
        for ws in mine:
            await ws.close()


async def test_a_phone_stream_signed_by_the_carrier_gets_past_strangers(serve):
    from voice.channels import twilio

    limits = {"max_waiting": 2, "max_waiting_per_address": 2}
    secret = "twilio-auth-token"
    async with (
        serve(ScriptedAgent(), limits=limits, twilio={"auth_token": secret}) as url,
        aiohttp.ClientSession() as http,
    ):
        phone = url.replace("/call", "/twilio")
        port = phone.split(":")[2].split("/")[0]
        signed = {
            twilio.SIGNATURE_HEADER: twilio.signature(secret, f"wss://127.0.0.1:{port}/twilio")
        }
        strangers = []
        for _ in range(2):  # a bad signature is refused before it takes a slot …
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(phone)
            assert refused.value.status == 403
            strangers.append(await http.ws_connect(url))  # … so strangers use /call
        async with SimulatedCarrier(phone, headers=signed) as carrier:
            await carrier.press("0")  # asks for a person: served, then closed
            await carrier.wait_until(lambda: carrier.closed_at is not None, timeout=30)
        assert carrier.close_code == 1000 and carrier.played_ms() > 1000
        for ws in strangers:
            await ws.close()


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].split("/")[0].split(":")
    return host, int(port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (reading whatever it sends)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def test_silent_connections_and_slow_headers_are_closed_but_calls_go_on(serve):
    async with serve(ScriptedAgent(), server={"header_timeout_s": 1.0}) as url:
        host, port = _address(url)
        silent_reader, silent = await asyncio.open_connection(host, port)
        slow_reader, slow = await asyncio.open_connection(host, port)

        async def dribble() -> None:  # headers at a byte every 50 ms: never complete in time
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200:
                    slow.write(bytes([byte]))
                    await slow.drain()
                    await asyncio.sleep(0.05)

        dribbling = asyncio.create_task(dribble())
        async with CallClient(url, PCM16, realtime_playback=False) as caller:
            assert await _closed_within(silent_reader, 6)
            assert await _closed_within(slow_reader, 6)  # its headers take 12 s
            await caller.send_text("is my bulb ok")  # a call is past its headers: it stays
            end = await caller.wait_for(lambda e: e["type"] == "reply.end", timeout=30)
        dribbling.cancel()
        for writer in (silent, slow):
            writer.close()
    assert end["text"]


async def test_one_address_holds_a_bounded_number_of_connections(serve):
    server = {"max_connections_per_address": 3}
    async with serve(ScriptedAgent(), server=server) as url, aiohttp.ClientSession() as http:
        host, port = _address(url)
        held = [await asyncio.open_connection(host, port) for _ in range(3)]
        over_reader, over = await asyncio.open_connection(host, port)
        assert await _closed_within(over_reader, 5), "the fourth is reset at once"
        held[0][1].close()
        await held[0][1].wait_closed()
        await asyncio.sleep(0.1)
        health = f"http://{host}:{port}/healthz"
        async with http.get(health) as response:  # a place freed up
            assert response.status == 200
        async with http.get(health.replace("healthz", "metrics")) as response:
            body = await response.text()  # on the same connection: the place it holds
        for _, writer in (*held[1:], (over_reader, over)):
            writer.close()
    assert 'voicedesk_calls_refused_total{reason="too_many_connections"} 1.0' in body


async def test_a_flood_of_typed_questions_replaces_its_work_and_others_are_answered(
    serve, models, monkeypatch
):
    """The attack: one caller types ten questions a second for three seconds. Three are taken
    at once, then about one a second (`call.max_typed_per_s`); one waits, a newer one takes its
    place. The flood costs a few replies' synthesis, not one per clause per question; the last
    question is answered, and so is another caller's meanwhile."""
    synthesizer = models.synthesizer
    started = 0
    blocking = synthesizer.synthesize_blocking

    def counted(text: str, alone: bool = False) -> np.ndarray:
        nonlocal started
        started += 1
        return blocking(text, alone)

    monkeypatch.setattr(synthesizer, "synthesize_blocking", counted)
    clauses = "First we check the line. Then we check the box. Then the plug. Then the bill."
    questions = 30
    async with (
        serve(ScriptedAgent(reply=clauses)) as url,
        CallClient(url, PCM16, realtime_playback=False) as flood,
        CallClient(url, PCM16) as other,
    ):
        began = time.monotonic()
        for number in range(questions):
            await flood.send_text(f"question number {number}")
            if number == 10:
                await other.send_text("is my bulb ok")
            await asyncio.sleep(0.1)
        flooded_s = time.monotonic() - began  # 3 s, more on a loaded machine
        end = await other.wait_for(lambda e: e["type"] == "reply.end", timeout=30)
        last = f"question number {questions - 1}"
        asked = await flood.wait_for(
            lambda e: e["type"] == "transcript.final" and e["text"] == last, timeout=30
        )
        await flood.wait_for(
            lambda e: e["type"] == "reply.end" and e["turn"] == asked["turn"], timeout=30
        )
    assert end["text"] and not end["interrupted"]
    taken = [e for e in flood.events if e["type"] == "transcript.final"]
    dropped = [e for e in flood.events if e.get("code") == "question_dropped"]
    # Three at once, then one a second while the flood lasted, then the one left waiting.
    assert len(taken) <= 3 + math.ceil(flooded_s) + 1, "three at once, then about one a second"
    assert len(taken) + len(dropped) == questions
    replies = len(taken) + 1  # and the other caller's
    assert started <= replies * len(clauses.split(". ")), "no more than a reply per question"
