"""SIP calls from the company's own PBX (docs/sip.md): what is decided without the SIP stack.

The SIP stack itself (PJSIP, in `voice.channels.sip_agent`) parses the messages, negotiates the
codecs and paces the RTP. What is ours is here, pure and tested without it: where to listen,
which peers may call, and the reply audio waiting for the RTP clock (`Playout`), which the
stack's media thread takes a frame at a time while the call's event loop adds to it.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Protocol = Literal["udp", "tcp"]

LOOPBACK = "127.0.0.0/8, ::1"
"""The peers allowed when `sip.allowed_peers` is not set: this machine only."""


@dataclass(frozen=True)
class ListenAddress:
    """Where the SIP user agent listens: `sip.listen`, e.g. "udp:0.0.0.0:5060"."""

    protocol: Protocol
    host: str
    port: int

    @classmethod
    def parse(cls, spec: str) -> ListenAddress:
        """Read "PROTOCOL:HOST:PORT" (an IPv6 host in brackets).

        Raises:
            ValueError: with a sentence saying what is wrong.
        """
        protocol, _, rest = spec.strip().partition(":")
        protocol = protocol.lower()
        if protocol not in ("udp", "tcp"):
            raise ValueError(f"{spec!r}: write it as udp:HOST:PORT or tcp:HOST:PORT")
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
            number = int(port)
        except ValueError:
            raise ValueError(
                f"{spec!r}: the host must be an IP address and the port a number"
            ) from None
        if not 0 <= number <= 65535:
            raise ValueError(f"{spec!r}: the port must be between 0 and 65535")
        return cls("udp" if protocol == "udp" else "tcp", host, number)


class Peers:
    """The addresses a call may come from: the PBX or SBC, as single addresses or networks."""

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self._networks = tuple(networks)

    @classmethod
    def parse(cls, spec: str | None) -> Peers:
        """Read `sip.allowed_peers`: addresses and networks, separated by commas ("10.0.0.5,
        192.168.10.0/24"). None allows this machine only.

        Raises:
            ValueError: an entry that is not an address or a network.
        """
        networks = []
        for entry in (spec if spec is not None else LOOPBACK).split(","):
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return cls(networks)

    def allows(self, source: str) -> bool:
        """Whether a message from `source` ("10.0.0.5:5060", "[::1]:5060", or an address
        alone) comes from an allowed peer."""
        host = host_of(source)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


def host_of(source: str) -> str:
    """The address part of "HOST:PORT" or "[HOST]:PORT" (or of a bare address)."""
    source = source.strip()
    if source.startswith("["):
        return source[1:].partition("]")[0]
    if source.count(":") == 1:
        return source.partition(":")[0]
    return source


def caller_of(remote_uri: str) -> str | None:
    """The caller's number or name from the remote party's SIP URI
    ('"Jane" <sip:+15551234@pbx>;tag=x' → "+15551234"), None when it has no user part."""
    uri = remote_uri
    if "<" in uri:
        uri = uri.partition("<")[2].partition(">")[0]
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips", "tel"):
        return None
    user = rest.partition("@")[0] if "@" in rest else (rest if scheme.lower() == "tel" else "")
    user = user.partition(";")[0]
    return user or None


@dataclass(frozen=True)
class Heard:
    """A frame of the caller's audio, PCM16 at the call's rate."""

    audio: bytes


@dataclass(frozen=True)
class Keyed:
    """A keypad digit, by RFC 4733 telephone-event or SIP INFO."""

    digit: str


@dataclass(frozen=True)
class Transferred:
    """News of a transfer (REFER) the call was asked to make: the transfer target's SIP status
    as the caller's side reports it; `final` once that will not change."""

    status: int
    final: bool


@dataclass(frozen=True)
class Gone:
    """The call is over on the SIP side: "hangup" (BYE, or the caller gave up ringing),
    "rtp_timeout" (no audio from the peer for `sip.rtp_timeout_s`)."""

    reason: str


News = Heard | Keyed | Transferred | Gone


@dataclass(frozen=True)
class Reached:
    """A mark the caller's side has now been sent up to: the reply of `turn` has gone out on
    the line as far as `position_ms`."""

    turn: int
    position_ms: int


class Playout:
    """Reply audio waiting for the line's clock, with the marks in it. The call's event loop
    `add`s audio (PCM16) and `mark`s; the SIP stack's media thread `take`s one frame per tick
    and learns which marks it passed; `clear` (barge-in) drops what is waiting. Safe to use
    from those two threads; `take` never blocks on the event loop.

    Args:
        frame_bytes: how much one tick takes (20 ms of the line's PCM16).
    """

    def __init__(self, frame_bytes: int) -> None:
        self.frame_bytes = frame_bytes
        self._silence = bytes(frame_bytes)
        self._chunks: deque[bytes] = deque()
        self._waiting = 0
        """Bytes in `_chunks`, less what `_offset` has taken of the first one."""
        self._offset = 0
        self._added = 0
        """Bytes added since the start: the position marks are set at."""
        self._taken = 0
        self._marks: deque[tuple[int, Reached]] = deque()
        self._lock = threading.Lock()

    @property
    def waiting_bytes(self) -> int:
        return self._waiting

    def add(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self._chunks.append(data)
            self._waiting += len(data)
            self._added += len(data)

    def mark(self, turn: int, position_ms: int) -> None:
        """Report `Reached(turn, position_ms)` once the audio added so far has been taken."""
        with self._lock:
            self._marks.append((self._added, Reached(turn, position_ms)))

    def clear(self) -> None:
        """Drop the waiting audio and the marks not reached yet."""
        with self._lock:
            self._taken += self._waiting
            self._chunks.clear()
            self._waiting = self._offset = 0
            self._added = self._taken
            self._marks.clear()

    def take(self) -> tuple[bytes, list[Reached]]:
        """The next frame (silence where there is no audio, or after the last of it) and the
        marks that frame passes."""
        with self._lock:
            frame = self._next_frame()
            reached = []
            while self._marks and self._marks[0][0] <= self._taken:
                reached.append(self._marks.popleft()[1])
        return frame, reached

    def _next_frame(self) -> bytes:
        if not self._waiting:
            return self._silence
        parts = []
        need = self.frame_bytes
        while need and self._chunks:
            chunk = self._chunks[0]
            piece = chunk[self._offset : self._offset + need]
            parts.append(piece)
            need -= len(piece)
            self._offset += len(piece)
            if self._offset >= len(chunk):
                self._chunks.popleft()
                self._offset = 0
        taken = self.frame_bytes - need
        self._waiting -= taken
        self._taken += taken
        if need:
            parts.append(self._silence[:need])
        return b"".join(parts)
