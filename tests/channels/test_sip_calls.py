"""SIP calls for real: Debian's baresip phone calls `voicedesk serve`'s SIP user agent on
loopback, plays a question spoken by the bundled voice, and records what comes back, which real
faster-whisper transcribes. Raw SIP over UDP checks what a phone would never send. These run in
real time: RTP is paced by the line."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import signal
import socket
import struct
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from agent.selection import build_agent
from agent.types import AgentSettings
from tests.support.feed import Feed
from tests.support.servers import make_services
from tests.support.sip_caller import SipCaller, header, sdp_offer, sip_request, sip_response
from tests.support.sip_peer import Baresip, free_udp_port, need_baresip
from voice.channels.codecs import float_to_int16, int16_to_float, resample
from voice.channels.pbx import sip_port
from voice.channels.twilio import PHONE_AUDIO
from voice.config import ServerSettings, Settings
from voice.office.backoffice import Office, open_office
from voice.ops.line import ADMISSION, METRICS, drain
from voice.ops.server import start_server

pytestmark = pytest.mark.models


@pytest.fixture(autouse=True)
def _baresip_here() -> None:
    need_baresip()


RETURNS = "How many days do I have to return a product?"
HEARD = {"days", "return"}
"""Words of RETURNS that tiny.en hears through G.711 every time ("product" comes out as "price"
now and then)."""


@dataclass
class SipServer:
    uri: str
    port: int
    feed: Feed
    app: web.Application
    office: Office


@contextlib.asynccontextmanager
async def sip_server(models, data_dir: Path | None = None, **sip) -> AsyncIterator[SipServer]:
    """The server with SIP on a free port of loopback, its records in `data_dir` (or none)."""
    agent, _ = build_agent(AgentSettings(backend="extractive"))
    office = Office()
    if data_dir is not None:
        office = open_office(replace(Settings(), server=ServerSettings(data_dir=data_dir)))
    feed = Feed(office.hub)
    collecting = asyncio.create_task(feed.collect())
    services = make_services(models, agent, sip={"listen": "udp:127.0.0.1:0", **sip})
    runner, _ = await start_server(services, "127.0.0.1", 0, office)
    port = sip_port(runner.app)
    try:
        yield SipServer(f"sip:voicedesk@127.0.0.1:{port}", port, feed, runner.app, office)
    finally:
        await runner.cleanup()
        office.close()
        await asyncio.gather(collecting, return_exceptions=True)


def transcribe(models, audio: np.ndarray, rate: int) -> str:
    samples = resample(int16_to_float(audio), rate, 16000).astype(np.float32)
    return models.transcriber.transcribe_blocking(samples).text


def words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split() if w.strip(".,!?")}


async def test_a_spoken_question_is_answered_over_sip(models, say, tmp_path):
    question = (say(RETURNS, rate=8000) * 32767).astype(np.int16)
    async with (
        sip_server(models, tmp_path / "data") as server,
        Baresip(tmp_path / "phone", question, user="sipcaller1") as phone,
    ):
        await phone.dial(server.uri)
        end = await server.feed.wait_for("sipcaller1", lambda e: e["type"] == "reply.end")
        await asyncio.sleep(0.5)
        await phone.hang_up()
        await server.feed.wait_for("sipcaller1", lambda e: e["type"] == "call.ended")
        call_id = server.feed.call_id("sipcaller1")
        store, recordings = server.office.store, server.office.recordings_dir
        assert store is not None and recordings is not None and call_id is not None
        assert store.flush(10)
        record = store.call(call_id)
    started = server.feed.of(call_id, "call.started")[0]
    assert started["channel"] == "sip"
    final = server.feed.of(call_id, "transcript.final")[0]
    assert words(final["text"]) >= HEARD
    assert not end["interrupted"] and end["heard"] == end["text"]
    # The phone received the answer: what it recorded says what the server said.
    received, rate = phone.received()
    heard = words(transcribe(models, received, rate))
    said = words(end["text"])
    assert len(heard & said) >= len(said) // 2, heard
    ended = server.feed.of(call_id, "call.ended")[0]
    assert ended["reason"] == "hangup"
    # The records hold the call, its turn and its stereo recording.
    assert record is not None and record.call.channel == "sip"
    assert record.call.caller_id == "sipcaller1" and record.call.end_reason == "hangup"
    assert record.call.metadata["codec"] == "PCMU"
    [turn] = record.turns
    assert turn.question == final["text"] and turn.reply == end["text"]
    assert record.call.recording is not None
    with wave.open(str(recordings / record.call.recording)) as recording:
        assert recording.getnchannels() == 2 and recording.getnframes() > 16000 * 5


async def test_keypad_zero_hands_off_with_a_transfer_to_the_queue(models, say, tmp_path):
    """DTMF 0 asks for a person: the handoff sentence plays, then a REFER sends the phone to
    `sip.transfer_to`, where the phone's INVITE arrives (a UDP socket stands in for the queue)."""
    queue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    queue.bind(("127.0.0.1", free_udp_port()))
    queue.setblocking(False)
    target = f"sip:600@127.0.0.1:{queue.getsockname()[1]}"
    silence = np.zeros(8000, dtype=np.int16)
    try:
        async with (
            sip_server(models, transfer_to=target) as server,
            Baresip(tmp_path / "phone", silence, user="sipcaller2") as phone,
        ):
            await phone.dial(server.uri)
            await server.feed.wait_for("sipcaller2", lambda e: e["type"] == "call.started")
            await asyncio.sleep(1.0)
            await phone.key("0")
            end = await server.feed.wait_for("sipcaller2", lambda e: e["type"] == "reply.end")
            invite = await _receive(queue, timeout=20)
            ended = await server.feed.wait_for(
                "sipcaller2", lambda e: e["type"] == "call.ended", timeout=20
            )
    finally:
        queue.close()
    assert end["handoff"]
    assert invite.startswith("INVITE sip:600@127.0.0.1")
    assert ended["reason"] == "handoff"


async def test_a_transfer_the_pbx_refuses_keeps_the_caller_with_the_assistant(models, tmp_path):
    """The transfer target answers baresip's INVITE with 486: baresip reports it in its NOTIFY,
    and the caller is told and stays in the call."""
    queue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    queue.bind(("127.0.0.1", 0))
    queue.setblocking(False)
    target = f"sip:600@127.0.0.1:{queue.getsockname()[1]}"
    loop = asyncio.get_running_loop()
    failed = Settings().sip.transfer_failed_message
    try:
        async with (
            sip_server(models, transfer_to=target) as server,
            Baresip(tmp_path / "phone", np.zeros(8000, np.int16), user="sipcaller5") as phone,
        ):
            await phone.dial(server.uri)
            await server.feed.wait_for("sipcaller5", lambda e: e["type"] == "call.started")
            await phone.key("0")
            data, source = await asyncio.wait_for(loop.sock_recvfrom(queue, 65536), 20)
            invite = data.decode()
            assert invite.startswith("INVITE sip:600@127.0.0.1")
            queue.sendto(sip_response(invite, "486 Busy Here"), source)
            told = await server.feed.wait_for(
                "sipcaller5", lambda e: e["type"] == "reply.end" and e["text"] == failed
            )
            await asyncio.sleep(1.0)
            call_id = server.feed.call_id("sipcaller5")
            assert not server.feed.of(call_id, "call.ended")
            await phone.hang_up()
            ended = await server.feed.wait_for("sipcaller5", lambda e: e["type"] == "call.ended")
    finally:
        queue.close()
    assert not told["handoff"]
    assert ended["reason"] == "hangup"


async def test_keypad_by_sip_info_reaches_the_call_and_without_a_target_a_person_takes_it(
    models, say
):
    """Some PBXs send keypad digits as SIP INFO rather than in the RTP stream. Without
    `sip.transfer_to` the handed-off call waits on voicedesk, where a supervisor takes it and is
    heard on the line."""
    async with (
        sip_server(models) as server,
        SipCaller("127.0.0.1", server.port, "sipcaller4") as phone,
    ):
        await server.feed.wait_for("sipcaller4", lambda e: e["type"] == "call.started")
        assert (await phone.press("0")).startswith("SIP/2.0 200")
        end = await server.feed.wait_for("sipcaller4", lambda e: e["type"] == "reply.end")
        await server.feed.wait_for("sipcaller4", lambda e: e["type"] == "hold")
        call_id = server.feed.call_id("sipcaller4")
        assert call_id is not None
        session = server.office.calls[call_id].session
        await session.take_over("alice")
        taken = len(phone.received.audio)
        voice = float_to_int16(say("Hello, this is Alice from customer service."))
        for offset in range(0, len(voice), 320):  # the console's 20 ms frames, in real time
            await session.person_audio("alice", voice[offset : offset + 320].tobytes())
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        person = PHONE_AUDIO.decode(bytes(phone.received.audio[taken:]))
    assert end["handoff"]
    [final] = server.feed.of(call_id, "transcript.final")
    assert final["text"] == "[keypad 0]"
    assert [e["state"] for e in server.feed.of(call_id, "hold")] == ["waiting", "person"]
    heard = words(transcribe(models, person, 8000))
    assert {"customer", "service"} <= heard, heard  # a name is the word 8 kHz most often mishears


async def test_a_peer_not_allowed_is_refused(models, tmp_path):
    async with (
        sip_server(models, allowed_peers="10.0.0.0/8") as server,
        Baresip(tmp_path / "phone", np.zeros(8000, dtype=np.int16), user="stranger") as phone,
    ):
        await phone.dial(server.uri)
        line = await phone.wait_for_log("403", timeout=10)
        assert "Forbidden" in line
        assert server.feed.call_id("stranger") is None
        await _refused(server, "unauthorized")


async def test_bad_sip_never_reaches_a_call_and_the_server_goes_on(models):
    async with sip_server(models) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind(("127.0.0.1", 0))
            raw.setblocking(False)
            here, peer = raw.getsockname()[1], ("127.0.0.1", server.port)
            raw.sendto(b"\x00\xffnot SIP at all\r\n\r\n", peer)
            raw.sendto(b"INVITE nowhere SIP/9.9\r\nVia: ???\r\n\r\n", peer)
            # An INVITE offering only a codec the server does not take: 488.
            invite = sip_request("INVITE", peer, here, body=sdp_offer(49170, {18: "G729/8000"}))
            raw.sendto(invite, peer)
            response = await _final_response(raw)
            assert response.startswith("SIP/2.0 488"), response
            # The server still answers.
            raw.sendto(sip_request("OPTIONS", peer, here), peer)
            assert (await _final_response(raw)).startswith("SIP/2.0 200")
        assert not server.feed.events or all(
            e["type"] != "call.started" for e in server.feed.events
        )


async def test_a_phone_that_vanishes_without_bye_is_ended_after_the_rtp_timeout(
    models, say, tmp_path
):
    question = (say(RETURNS, rate=8000) * 32767).astype(np.int16)
    async with sip_server(models, rtp_timeout_s=2.0) as server:
        async with Baresip(tmp_path / "phone", question, user="sipcaller3") as phone:
            await phone.dial(server.uri)
            await server.feed.wait_for("sipcaller3", lambda e: e["type"] == "transcript.final")
            assert phone.pid is not None
            os.kill(phone.pid, signal.SIGKILL)  # no BYE, no more RTP
        ended = await server.feed.wait_for(
            "sipcaller3", lambda e: e["type"] == "call.ended", timeout=15
        )
    assert ended["reason"] == "rtp_timeout"
    call_id = server.feed.call_id("sipcaller3")
    assert server.feed.of(call_id, "transcript.final")


async def _refused(server: SipServer, reason: str) -> None:
    """Return once one call refused for `reason` is counted (the count crosses from PJSIP's
    thread to the event loop); TimeoutError after 5 s."""
    counted = re.compile(rf'refused_total\{{reason="{reason}"\}} 1\.0')
    async with asyncio.timeout(5):
        # A counter read at each scrape: polled, there is nothing to wait on.
        while not counted.search(server.app[METRICS].render().decode()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------ raw SIP


async def _final_response(raw: socket.socket, timeout: float = 5) -> str:
    """The first response over 199 (provisional ones are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            text = await _receive(raw, timeout)
            status = text.split(" ", 2)[1] if text.startswith("SIP/2.0 ") else ""
            if status.isdigit() and int(status) >= 200:
                return text


async def _receive(sock: socket.socket, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        data = await loop.sock_recv(sock, 65536)
    return data.decode(errors="replace")


async def test_a_call_over_the_line_limit_gets_busy(models):
    async with sip_server(models) as server:
        server.app[ADMISSION].max_calls = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind(("127.0.0.1", 0))
            raw.setblocking(False)
            here, peer = raw.getsockname()[1], ("127.0.0.1", server.port)
            invite = sip_request("INVITE", peer, here, body=sdp_offer(49170, {0: "PCMU/8000"}))
            raw.sendto(invite, peer)
            response = await _final_response(raw)
    assert response.startswith("SIP/2.0 486"), response
    assert re.search(r'refused_total\{reason="busy"\} 1\.0', server.app[METRICS].render().decode())


async def test_the_server_registers_with_the_pbx_as_an_extension(models):
    """With `sip.registrar` set, the server registers and answers the digest challenge with
    its password; a UDP socket stands in for the PBX's registrar."""
    registrar = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    registrar.bind(("127.0.0.1", 0))
    registrar.setblocking(False)
    uri = f"sip:127.0.0.1:{registrar.getsockname()[1]}"
    loop = asyncio.get_running_loop()
    try:
        async with sip_server(
            models, registrar=uri, user="201", password="s3cret", allowed_peers="127.0.0.1"
        ) as server:
            async with asyncio.timeout(20):
                first, source = await loop.sock_recvfrom(registrar, 65536)
                register = first.decode()
                assert register.startswith(f"REGISTER {uri} SIP/2.0")
                assert "Authorization" not in register
                registrar.sendto(_challenge(register), source)
                # On a loaded machine the first REGISTER may come again (UDP retransmission)
                # before the challenge is read: each unanswered one is challenged too.
                answered = register
                while "Authorization" not in _header_names(answered):
                    data, source = await loop.sock_recvfrom(registrar, 65536)
                    answered = data.decode()
                    if "Authorization" not in _header_names(answered):
                        registrar.sendto(_challenge(answered), source)
            assert _digest_valid(answered, "201", "s3cret", uri)
            assert f"<sip:201@127.0.0.1:{server.port}" in header(answered, "Contact")
            registrar.sendto(_registered(answered), source)
            metrics = server.app[METRICS]
            async with asyncio.timeout(5):
                # A gauge read at each scrape: polled, there is nothing to wait on.
                while "voicedesk_sip_registered 1.0" not in metrics.render().decode():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
    finally:
        registrar.close()


NONCE = "f84f1cec41e6cbe5aea9c8e88d359"


def _header_names(message: str) -> set[str]:
    return {line.partition(":")[0].strip() for line in message.split("\r\n")[1:] if ":" in line}


def _challenge(register: str) -> bytes:
    realm = f'Digest realm="pbx", nonce="{NONCE}", algorithm=MD5'
    return sip_response(register, "401 Unauthorized", f"WWW-Authenticate: {realm}")


def _registered(register: str) -> bytes:
    contact = header(register, "Contact")
    return sip_response(register, "200 OK", f"Contact: {contact};expires=300")


def _digest_valid(register: str, user: str, password: str, uri: str) -> bool:
    """RFC 2617's check of an Authorization header without qop."""
    authorization = header(register, "Authorization")
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', authorization))
    ha1 = hashlib.md5(f"{user}:pbx:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{fields.get('uri', '')}".encode()).hexdigest()
    expected = hashlib.md5(f"{ha1}:{NONCE}:{ha2}".encode()).hexdigest()
    return (
        fields.get("username") == user
        and fields.get("uri") == uri
        and fields.get("response") == expected
    )


@pytest.mark.parametrize(
    ("offer", "answered"),
    [({8: "PCMA/8000"}, "8 PCMA/8000"), ({9: "G722/8000"}, "9 G722/8000")],
)
async def test_a_law_and_g722_are_answered(models, offer, answered):
    payload, rtpmap = answered.split(" ")
    async with (
        sip_server(models) as server,
        SipCaller("127.0.0.1", server.port, f"codec{payload}", offer=offer) as phone,
    ):
        started = await server.feed.wait_for(
            f"codec{payload}", lambda e: e["type"] == "call.started"
        )
    assert started["channel"] == "sip"
    assert re.search(rf"m=audio \d+ RTP/AVP {payload}\b", phone.answer)
    assert f"a=rtpmap:{payload} {rtpmap}" in phone.answer


async def test_the_server_shutting_down_ends_a_sip_call_with_bye(models):
    async with (
        sip_server(models) as server,
        SipCaller("127.0.0.1", server.port, "sipcaller6") as phone,
    ):
        await server.feed.wait_for("sipcaller6", lambda e: e["type"] == "call.started")
        await drain(server.app, grace_s=1.0)
        ended = await server.feed.wait_for("sipcaller6", lambda e: e["type"] == "call.ended")
        async with asyncio.timeout(5):
            while not phone.bye_received:  # noqa: ASYNC110 (set by the SIP reader)
                await asyncio.sleep(0.05)
    assert ended["reason"] == "server_shutdown"


async def test_rtp_from_a_stranger_does_not_take_the_call(models, say):
    """Loud RTP sprayed at a call's port from another address: the caller's own question is
    still heard and answered, and the answer comes back to the caller."""
    question = say(RETURNS, rate=8000)
    async with (
        sip_server(models) as server,
        SipCaller("127.0.0.1", server.port, "sipcaller7") as phone,
    ):
        await server.feed.wait_for("sipcaller7", lambda e: e["type"] == "call.started")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            noise = bytes(np.random.default_rng(7).integers(0, 256, 160, dtype=np.uint8))
            for sequence in range(100):
                header = struct.pack("!BBHII", 0x80, 0, sequence, sequence * 160, 0xBAD)
                stranger.sendto(header + noise, phone.remote_rtp)
                await asyncio.sleep(0.01)
        await phone.say(question)
        end = await server.feed.wait_for("sipcaller7", lambda e: e["type"] == "reply.end")
        heard_from = len(phone.received.arrivals)
    call_id = server.feed.call_id("sipcaller7")
    [final] = server.feed.of(call_id, "transcript.final")
    assert words(final["text"]) >= HEARD
    assert end["sources"] and not end["handoff"]
    assert heard_from > 50  # the reply's sound came back to the caller, not the stranger


async def test_a_fifth_sip_call_gets_busy_from_pjsip_and_is_counted(models):
    """The PJSIP build holds 4 calls (docs/sip.md, "How many calls"): the fifth is refused
    with 486 before it reaches the server, which still counts it."""
    async with sip_server(models) as server, contextlib.AsyncExitStack() as calls:
        for number in range(4):
            await calls.enter_async_context(SipCaller("127.0.0.1", server.port, f"four{number}"))
        with pytest.raises(ConnectionError, match="486"):
            async with SipCaller("127.0.0.1", server.port, "fifth"):
                pass
        await _refused(server, "busy")
    assert server.feed.call_id("fifth") is None
