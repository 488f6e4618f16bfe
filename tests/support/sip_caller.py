"""A bare SIP phone over UDP for the benchmarks: an INVITE offering G.711 μ-law, then RTP sent in
real time (speech or silence, 20 ms a packet, as `SpokenLine` paces it) and received with the
arrival time of each packet, then BYE. It keeps what a latency measurement needs at the packet
level (when the last voiced packet went out, when reply audio came in), which a full phone such
as baresip, with its jitter buffer and sound pipeline in between, does not show.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from voice.channels import twilio
from voice.clients.client import SpokenLine

PCMU = 0
"""RTP payload type of G.711 μ-law."""
SILENT_CODES = frozenset({0xFF, 0x7F})
"""μ-law code words of a zero sample."""


@dataclass
class Received:
    arrivals: list[float] = field(default_factory=list)
    """Monotonic times of packets holding sound (any sample not zero)."""
    audio: bytearray = field(default_factory=bytearray)
    """Every μ-law byte received, in order."""


class SipCaller:
    """One call to `host:port` from a fresh UDP port of 127.0.0.1. Use as an async context
    manager; `say` speaks 8 kHz float32 audio into the call."""

    def __init__(
        self, host: str, port: int, caller_id: str, offer: dict[int, str] | None = None
    ) -> None:
        self.server = (host, port)
        self.caller_id = caller_id
        self.received = Received()
        self.bye_received = False
        self._sip = _socket()
        self._rtp = _socket()
        self._here = self._sip.getsockname()[1]
        self._rtp_port = self._rtp.getsockname()[1]
        self._call_id = f"{random.getrandbits(64):x}"
        self._tag = f"{random.getrandbits(32):x}"
        self._to = f"<sip:voicedesk@{host}:{port}>"
        self._remote_rtp: tuple[str, int] | None = None
        self._line = SpokenLine(twilio.PHONE_AUDIO.sample_rate)
        self._sequence = itertools.count(random.getrandbits(15))
        self._ssrc = random.getrandbits(32)
        self._tasks: list[asyncio.Task[None]] = []
        self._responses: asyncio.Queue[str] = asyncio.Queue()
        self._cseq = itertools.count(2)
        self._offer = offer or {PCMU: "PCMU/8000", 101: "telephone-event/8000"}
        """What the INVITE offers (RTP payload type → rtpmap); only PCMU is sent and heard."""
        self.answer = ""
        """The server's 200 OK to the INVITE, SDP and all."""

    async def __aenter__(self) -> SipCaller:
        self._tasks.append(asyncio.create_task(self._read_sip()))
        self._send_sip(self._request("INVITE", 1, sdp_offer(self._rtp_port, self._offer)))
        answer = self.answer = await self._final_response()
        if not answer.startswith("SIP/2.0 200"):
            self.bye_received = True  # nothing to end
            await self.__aexit__()
            raise ConnectionError(f"the call was refused: {answer.splitlines()[0]}")
        self._to = header(answer, "To")
        self._remote_rtp = _rtp_address(answer)
        self._send_sip(self._request("ACK", 1, ""))
        self._tasks.append(asyncio.create_task(self._read_rtp()))
        self._tasks.append(asyncio.create_task(self._line.run(self._send_rtp)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.bye_received:
            self._send_sip(self._request("BYE", next(self._cseq), ""))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._final_response(), 2)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._sip.close()
        self._rtp.close()

    async def say(self, samples: np.ndarray) -> float:
        """Speak float32 8 kHz audio; returns when its last voiced sample went out."""
        return await self._line.say(samples)

    @property
    def remote_rtp(self) -> tuple[str, int]:
        """Where the server takes this call's RTP."""
        assert self._remote_rtp is not None
        return self._remote_rtp

    async def press(self, digit: str) -> str:
        """Press a keypad digit, sent as SIP INFO (application/dtmf-relay); returns the
        response's status line."""
        body = f"Signal={digit}\r\nDuration=160\r\n"
        self._send_sip(self._request("INFO", next(self._cseq), body, "application/dtmf-relay"))
        return (await self._final_response()).split("\r\n", 1)[0]

    # ------------------------------------------------------------------------------ SIP

    def _request(
        self, method: str, sequence: int, body: str, content_type: str = "application/sdp"
    ) -> bytes:
        return sip_request(
            method,
            self.server,
            self._here,
            caller=self.caller_id,
            call_id=self._call_id,
            tag=self._tag,
            to=self._to,
            sequence=sequence,
            body=body,
            content_type=content_type,
        )

    def _send_sip(self, message: bytes) -> None:
        self._sip.sendto(message, self.server)

    async def _final_response(self) -> str:
        while True:
            response = await self._responses.get()
            status = response.split(" ", 2)[1]
            if int(status) >= 200:
                return response

    async def _read_sip(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data, source = await loop.sock_recvfrom(self._sip, 65536)
            text = data.decode(errors="replace")
            if text.startswith("SIP/2.0 "):
                self._responses.put_nowait(text)
            elif text.startswith("BYE "):
                self.bye_received = True
                self._sip.sendto(sip_response(text, "200 OK"), source)
            elif not text.startswith("ACK "):
                self._sip.sendto(sip_response(text, "200 OK"), source)

    # ------------------------------------------------------------------------------ RTP

    async def _send_rtp(self, frame: np.ndarray) -> None:
        assert self._remote_rtp is not None
        sequence = next(self._sequence) & 0xFFFF
        header = struct.pack("!BBHII", 0x80, PCMU, sequence, sequence * 160, self._ssrc)
        self._rtp.sendto(header + twilio.PHONE_AUDIO.encode(frame), self._remote_rtp)

    async def _read_rtp(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            packet = await loop.sock_recv(self._rtp, 2048)
            if len(packet) <= 12 or packet[1] & 0x7F != PCMU:
                continue
            payload = packet[12:]
            self.received.audio.extend(payload)
            if not SILENT_CODES.issuperset(payload):
                self.received.arrivals.append(time.monotonic())


def sip_request(
    method: str,
    server: tuple[str, int],
    here: int,
    *,
    caller: str = "raw",
    call_id: str | None = None,
    tag: str | None = None,
    to: str | None = None,
    sequence: int = 1,
    body: str = "",
    content_type: str = "application/sdp",
) -> bytes:
    """A SIP request over UDP from port `here` of 127.0.0.1 to `server`."""
    host, port = server
    branch = f"z9hG4bK{random.getrandbits(48):x}"
    lines = [
        f"{method} sip:voicedesk@{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{here};rport;branch={branch}",
        "Max-Forwards: 70",
        f"From: <sip:{caller}@127.0.0.1:{here}>;tag={tag or random.getrandbits(32)}",
        f"To: {to or f'<sip:voicedesk@{host}:{port}>'}",
        f"Call-ID: {call_id or random.getrandbits(64)}@127.0.0.1",
        f"CSeq: {sequence} {method}",
        f"Contact: <sip:{caller}@127.0.0.1:{here}>",
    ]
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def sdp_offer(rtp_port: int, payloads: dict[int, str]) -> str:
    """An SDP offer of audio on `rtp_port` of 127.0.0.1 with `payloads` (type → rtpmap)."""
    kinds = " ".join(map(str, payloads))
    maps = "".join(f"a=rtpmap:{kind} {name}\r\n" for kind, name in payloads.items())
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP {kinds}\r\n{maps}a=ptime:20\r\na=sendrecv\r\n"
    )


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def header(message: str, name: str) -> str:
    """The value of header `name` in a SIP message ("" when it has none)."""
    for line in message.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def sip_response(request: str, status: str, *extra: str) -> bytes:
    """A response to `request` ("200 OK", "486 Busy Here"...), echoing the headers a response
    must carry, with `extra` header lines."""
    kept = [f"{name}: {header(request, name)}" for name in ("Via", "From", "To", "Call-ID", "CSeq")]
    lines = [f"SIP/2.0 {status}", *kept, *extra, "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _rtp_address(answer: str) -> tuple[str, int]:
    body = answer.partition("\r\n\r\n")[2]
    host = next(line[9:].strip() for line in body.splitlines() if line.startswith("c=IN IP4"))
    port = next(int(line.split()[1]) for line in body.splitlines() if line.startswith("m=audio"))
    return host, port
