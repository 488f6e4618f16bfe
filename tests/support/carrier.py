"""A simulated telephone carrier that calls `/twilio` the way Twilio Media Streams does: for the
tests and the benchmarks.

It streams the caller's line in real time (20 ms μ-law `media` messages, speech or silence),
plays the server's `media` on a real-time clock, echoes each `mark` once the audio sent before
it has played, and honours `clear` by dropping what it holds and echoing the marks still pending,
as Twilio does. What it played is kept, so a test can check what the caller really heard.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from voice.call.clock import WALL_CLOCK, Clock
from voice.channels import twilio
from voice.clients.client import FRAME_MS, MAX_CATCH_UP_S, SpokenLine

BYTES_PER_MS = twilio.PHONE_AUDIO.sample_rate // 1000
"""μ-law at 8 kHz: one byte a sample."""


@dataclass
class Echo:
    name: str
    at: float
    """Monotonic time it was echoed."""
    played: bool
    """False when it was echoed because of a `clear`, not because its audio played."""
    played_ms: int
    """Reply audio played in the whole call when it was echoed."""


@dataclass
class Playback:
    """The carrier's outbound buffer, played on a real-time clock."""

    buffered: bytearray = field(default_factory=bytearray)
    played: bytearray = field(default_factory=bytearray)
    """Every byte of reply audio the caller heard, in order."""
    pending: deque[tuple[int, str]] = field(default_factory=deque)
    """Marks waiting for their audio: (position in `played` + `buffered` order, name)."""
    first_audio_at: float | None = None
    clears: list[float] = field(default_factory=list)

    @property
    def end(self) -> int:
        return len(self.played) + len(self.buffered)

    def play(self, nbytes: int) -> list[str]:
        """Play up to `nbytes`; the marks whose audio has now played."""
        chunk = self.buffered[:nbytes]
        del self.buffered[:nbytes]
        self.played.extend(chunk)
        due = []
        while self.pending and self.pending[0][0] <= len(self.played):
            due.append(self.pending.popleft()[1])
        return due

    def clear(self) -> list[str]:
        """Drop the buffered audio; every pending mark, echoed at once."""
        self.buffered.clear()
        self.clears.append(time.monotonic())
        names = [name for _, name in self.pending]
        self.pending.clear()
        return names


class SimulatedCarrier:
    """One phone call to a voicedesk `/twilio` endpoint. Use as an async context manager."""

    def __init__(
        self,
        url: str,
        *,
        parameters: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        stream_sid: str = "MZ00000000000000000000000000000001",
        call_sid: str = "CA00000000000000000000000000000001",
        echo_marks: bool = True,
        echo_lag_s: float = 0.0,
        clock: Clock = WALL_CLOCK,
    ) -> None:
        self.url = url
        self.echo_marks = echo_marks
        """False: a gateway that never echoes marks."""
        self.echo_lag_s = echo_lag_s
        """How long after its audio played a mark is echoed (a slow network back), on `clock`."""
        self._lagging: set[asyncio.Task[None]] = set()
        self.parameters = parameters or {}
        self.headers = headers or {}
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.playback = Playback()
        self.marks_received: list[str] = []
        self.echoes: list[Echo] = []
        self.received: list[dict[str, Any]] = []
        """Every message from the server, in order (media payloads left in)."""
        self.close_code: int | None = None
        self.closed_at: float | None = None
        self._clock = clock
        """Paces the caller's line and the playback (the server's replies on the same one)."""
        self._line = SpokenLine(twilio.PHONE_AUDIO.sample_rate, clock)
        self._sequence = 0
        self._chunk = 0
        self._changed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> SimulatedCarrier:
        self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(self.url, headers=self.headers)
        except BaseException:
            await self._session.close()
            raise
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send(
            {
                "event": "start",
                "streamSid": self.stream_sid,
                "start": {
                    "accountSid": "AC00000000000000000000000000000001",
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": self.parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
        self._tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._play()),
            asyncio.create_task(self._line.run(self._send_media)),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()

    async def say(self, samples: np.ndarray) -> float:
        """Speak float32 8 kHz audio on the line; returns when its last voiced sample was sent."""
        return await self._line.say(samples)

    async def press(self, digit: str) -> None:
        await self._send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def hang_up(self) -> None:
        """Send `stop` (when the stream is still open) and close."""
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(
                    {
                        "event": "stop",
                        "streamSid": self.stream_sid,
                        "stop": {
                            "accountSid": "AC00000000000000000000000000000001",
                            "callSid": self.call_sid,
                        },
                    }
                )
            with contextlib.suppress(TimeoutError):
                await self.wait_until(lambda: self.closed_at is not None, timeout=5)
        for task in (*self._tasks, *self._lagging):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._lagging, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        """Return once `condition()` holds; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def played_ms(self) -> int:
        return len(self.playback.played) // BYTES_PER_MS

    def played_audio(self) -> np.ndarray:
        """What the caller heard, int16 at 8 kHz."""
        return twilio.PHONE_AUDIO.decode(bytes(self.playback.played))

    # ------------------------------------------------------------ the wire

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        if self._ws.closed:
            raise ConnectionError("the stream is closed")
        self._sequence += 1
        await self._ws.send_str(json.dumps({**message, "sequenceNumber": str(self._sequence)}))

    async def _send_media(self, frame: np.ndarray) -> None:
        self._chunk += 1
        payload = base64.b64encode(twilio.PHONE_AUDIO.encode(frame)).decode("ascii")
        await self._send(
            {
                "event": "media",
                "streamSid": self.stream_sid,
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str((self._chunk - 1) * FRAME_MS),
                    "payload": payload,
                },
            }
        )

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await self._on_message(json.loads(message.data))
                self._changed.set()
        finally:
            self.close_code = self._ws.close_code
            self.closed_at = time.monotonic()
            self._changed.set()

    async def _on_message(self, message: dict[str, Any]) -> None:
        self.received.append(message)
        event = message.get("event")
        if event == "media":
            if self.playback.first_audio_at is None:
                self.playback.first_audio_at = time.monotonic()
            self.playback.buffered.extend(base64.b64decode(message["media"]["payload"]))
        elif event == "mark":
            name = message["mark"]["name"]
            self.marks_received.append(name)
            self.playback.pending.append((self.playback.end, name))
            if not self.playback.buffered:  # nothing left to play before it
                await self._echo(self.playback.play(0), played=True)
        elif event == "clear":
            await self._echo(self.playback.clear(), played=False)

    async def _play(self) -> None:
        """Play the buffer at real time, 20 ms a tick, echoing marks as their audio plays. Held
        up for longer than `MAX_CATCH_UP_S` (a busy machine), it plays on in real time from
        there, as a phone does, rather than play and echo the time it missed in a burst."""
        began, ticks = self._clock.now(), 0
        while True:
            ticks += 1
            delay = began + ticks * FRAME_MS / 1000 - self._clock.now()
            if delay < -MAX_CATCH_UP_S:
                began -= delay
                delay = 0.0
            await self._clock.sleep(max(0.0, delay))
            if self.playback.buffered or self.playback.pending:
                due = self.playback.play(FRAME_MS * BYTES_PER_MS)
                await self._echo(due, played=True)
                self._changed.set()

    async def _echo(self, names: list[str], played: bool) -> None:
        if not self.echo_marks or not names:
            return
        if played and self.echo_lag_s > 0:
            task = asyncio.create_task(self._send_echoes(names, played, self.echo_lag_s))
            self._lagging.add(task)
            task.add_done_callback(self._lagging.discard)
            return
        await self._send_echoes(names, played)

    async def _send_echoes(self, names: list[str], played: bool, after_s: float = 0.0) -> None:
        played_ms = self.played_ms()
        await self._clock.sleep(after_s)
        for name in names:
            self.echoes.append(Echo(name, time.monotonic(), played, played_ms))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(
                    {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}
                )
