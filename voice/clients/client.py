"""A caller over the caller protocol: used by `voicedesk call`, the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from voice.call.clock import WALL_CLOCK, Clock
from voice.channels.codecs import AudioFormat, float_to_int16
from voice.ops.admission import MessageRate

FRAME_MS = 20
"""Frame length of the real-time line, as a microphone or phone line sends it."""
FAST_FRAME_MS = 100
"""Frame length of the fast mode: the longest the protocol takes (`call.max_frame_ms`)."""
FAST_MESSAGES_PER_S = 100.0
FAST_BURST_S = 1.0
"""The fast mode sends at most `FAST_MESSAGES_PER_S` messages a second, `FAST_BURST_S` seconds'
worth at once: half the server's default limit (`call.max_messages_per_s`, 200 a second over
2 s), past which it closes the call with 4429. With 100 ms frames that is ten times real time,
and a question of up to 10 s goes at once."""
TRAILING_SILENCE_MS = 1500
"""Silence sent after each question in --fast mode, so the server hears the end of the turn."""
VOICED_LEVEL = 0.02
"""Peak level above which a sample of a question file counts as voiced (for perceived latency)."""


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Any file ffmpeg reads (wav, flac, mp3, ogg, ...), any rate and channels → mono float32."""
    from faster_whisper import decode_audio

    return np.asarray(decode_audio(str(path), sampling_rate=sample_rate), dtype=np.float32)


@dataclass
class Turn:
    """What the caller saw of one turn."""

    turn: int
    transcript: str = ""
    reply: str = ""
    heard: str = ""
    sources: list[str] = field(default_factory=list)
    handoff: bool = False
    interrupted: bool = False
    ignored: bool = False
    rules: list[str] = field(default_factory=list)
    timings_ms: dict[str, int | None] = field(default_factory=dict)
    audio_ms: int = 0
    """Reply audio the server says it sent (`reply.end.audio_ms`)."""
    audio: bytearray = field(default_factory=bytearray)
    """Reply audio received before any `clear`, in the call's format."""
    first_audio_at: float | None = None
    cleared: bool = False
    stall_ms: int = 0
    """The longest the caller's playback ran dry inside the reply: a frame that came later
    than the audio before it had finished playing (on the wall clock, from the first frame)."""
    stall_at_ms: int = 0
    """Where in the reply's audio the longest stall came (the audio received before it)."""
    _playing_until: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "turn": self.turn,
            "transcript": self.transcript,
            "reply": self.reply,
            "heard": self.heard,
            "sources": self.sources,
            "handoff": self.handoff,
            "interrupted": self.interrupted,
            "ignored": self.ignored,
            "rules": self.rules,
            "timings_ms": self.timings_ms,
        }


MAX_CATCH_UP_S = 0.5
"""A line held up longer than this sends on from where it is, not the frames it missed."""


class SpokenLine:
    """A caller's side of a real-time line: speech when there is some, silence otherwise, in
    `FRAME_MS` frames on the wall clock, as a microphone or a phone line sends it."""

    def __init__(self, sample_rate: int, clock: Clock = WALL_CLOCK) -> None:
        """`clock` paces the frames: the wall clock but in tests that run a call faster."""
        self._step = sample_rate * FRAME_MS // 1000
        self._clock = clock
        self._speech: deque[tuple[np.ndarray, int, asyncio.Future[float]]] = deque()
        self._stopped: str | None = None

    def say(self, samples: np.ndarray) -> asyncio.Future[float]:
        """Queue float32 speech; the future resolves with the wall time (monotonic) its last
        voiced sample went out, or fails with ConnectionError when the line stops first."""
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if self._stopped is not None:
            done.set_exception(ConnectionError(f"the line is down ({self._stopped})"))
            return done
        voiced = np.flatnonzero(np.abs(samples) > VOICED_LEVEL)
        self._speech.append((samples, int(voiced[-1]) if len(voiced) else 0, done))
        return done

    async def run(self, send: Callable[[np.ndarray], Awaitable[None]]) -> None:
        """Send int16 frames until the connection fails (ConnectionError, RuntimeError) or the
        task is cancelled; speech still queued then fails with ConnectionError."""
        try:
            await self._send_frames(send)
        except (ConnectionError, RuntimeError) as error:
            self._stop(f"sending failed: {error!r}")
        finally:
            self._stop("the line was closed")

    def _stop(self, why: str) -> None:
        if self._stopped is None:
            self._stopped = why
        while self._speech:
            _, _, future = self._speech.popleft()
            if not future.done():
                future.set_exception(ConnectionError(f"the line is down ({self._stopped})"))

    async def _send_frames(self, send: Callable[[np.ndarray], Awaitable[None]]) -> None:
        silence = np.zeros(self._step, np.float32)
        began, sent = self._clock.now(), 0
        offset = 0
        while True:
            frame, finished = silence, None
            if self._speech:
                samples, last_voiced, future = self._speech[0]
                frame = samples[offset : offset + self._step]
                if offset <= last_voiced < offset + self._step and not future.done():
                    future.set_result(time.monotonic())
                offset += self._step
                if offset >= len(samples):
                    self._speech.popleft()
                    offset, finished = 0, future
            await send(float_to_int16(frame))
            if finished is not None and not finished.done():
                finished.set_result(time.monotonic())
            sent += 1
            delay = began + sent * FRAME_MS / 1000 - self._clock.now()
            if delay > 0:
                await self._clock.sleep(delay)
            elif delay < -MAX_CATCH_UP_S:
                # Held up (a busy machine): go on in real time from now rather than send the
                # backlog in a burst, which no line does and the server's message rate refuses.
                began -= delay


class Pacer:
    """Holds a sender to a message rate: a token bucket (`MessageRate`, as the server keeps) that
    waits where the server's refuses. One per connection; `clock` and `sleep` are for tests."""

    def __init__(
        self,
        per_s: float = FAST_MESSAGES_PER_S,
        burst_s: float = FAST_BURST_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._bucket = MessageRate(per_s, burst_s, clock)
        self._sleep = sleep

    async def wait(self) -> None:
        """Return when one more message may go (and count it). Always yields to the loop once,
        so that a fast sender lets the call's reader run."""
        await self._sleep(0)
        while not self._bucket.take():
            await self._sleep(self._bucket.wait_s())


class CallClient:
    """One call to a voicedesk server. Events are read in the background into `events`."""

    def __init__(
        self,
        url: str,
        audio: AudioFormat,
        *,
        realtime_playback: bool = True,
        token: str | None = None,
        pacer: Pacer | None = None,
        clock: Clock = WALL_CLOCK,
        keep_audio: bool = False,
    ) -> None:
        """`pacer` holds the fast mode's audio to a message rate (default: `Pacer()`, within the
        server's default limit); `clock` paces the real-time line (a test may run it faster,
        with the server's replies paced on the same clock); `keep_audio`: keep every audio
        frame received, with the time it came, in `received` (a person's voice, hold audio)."""
        self.url = url
        self._token = token
        self.format = audio
        self.realtime_playback = realtime_playback
        self.events: list[dict[str, Any]] = []
        self.turns: dict[int, Turn] = {}
        self.close_code: int | None = None
        self.call_id = ""
        self.feedback_token = ""
        """What `POST /api/feedback` takes for this call's turns."""
        self.received: list[tuple[float, bytes]] | None = [] if keep_audio else None
        """(monotonic time, frame) of every audio frame received, when `keep_audio`."""
        self._reply_turn: int | None = None
        self._changed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._spoken = SpokenLine(audio.sample_rate, clock)
        self._line: asyncio.Task[None] | None = None
        self._pacer = pacer or Pacer()

    async def __aenter__(self) -> CallClient:
        self._session = aiohttp.ClientSession()
        try:
            # The token goes in the upgrade's header, where the server checks it before the
            # call takes a place among the connections that have not started.
            headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
            self._ws = await self._session.ws_connect(
                self.url, max_msg_size=1 << 20, headers=headers
            )
        except BaseException:
            await self._session.close()
            raise
        self._reader = asyncio.create_task(self._read())
        start: dict[str, Any] = {
            "type": "start",
            "version": 2,
            "audio": {"encoding": self.format.encoding, "sample_rate": self.format.sample_rate},
            "options": {"realtime_playback": self.realtime_playback},
        }
        await self._ws.send_json(start)
        try:
            ready = await self.wait_for(lambda e: e["type"] in ("ready", "end"), timeout=30)
        except BaseException:
            await self.hang_up()
            raise
        if ready["type"] != "ready":
            await self.hang_up()
            raise ConnectionError(f"the server refused the call: {self.events}")
        self.call_id = ready["call_id"]
        self.feedback_token = ready.get("feedback_token", "")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()

    async def hang_up(self) -> None:
        if self._line is not None:
            self._line.cancel()
            await asyncio.gather(self._line, return_exceptions=True)
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.send_json({"type": "hangup"})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.shield(self._reader)  # type: ignore[arg-type]
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    async def send_audio(self, samples: np.ndarray, *, realtime: bool) -> float:
        """Send float32 samples at the call's rate; returns the wall time the last voiced sample
        was sent. In real time the audio goes out on the line (see `speak`); otherwise in
        `FAST_FRAME_MS` frames as fast as the pacer lets them go."""
        if realtime:
            return await self.speak(samples)
        assert self._ws is not None
        step = self.format.sample_rate * FAST_FRAME_MS // 1000
        for offset in range(0, len(samples), step):
            await self._pacer.wait()
            await self._ws.send_bytes(
                self.format.encode(float_to_int16(samples[offset : offset + step]))
            )
        return time.monotonic()

    async def speak(self, samples: np.ndarray) -> float:
        """Say `samples` on the line: a real-time stream that carries silence between utterances,
        as a microphone or phone line does. Returns when the last voiced sample was sent."""
        if self._line is None:
            self._line = asyncio.create_task(self._spoken.run(self._send_frame))
        return await self._spoken.say(samples)

    async def _send_frame(self, frame: np.ndarray) -> None:
        assert self._ws is not None
        if self._ws.closed:
            raise ConnectionError("the call is closed")
        await self._ws.send_bytes(self.format.encode(frame))

    async def send_silence(self, ms: int) -> None:
        """Send silence as fast as the pacer lets it go (the --fast end of a question)."""
        await self.send_audio(
            np.zeros(self.format.sample_rate * ms // 1000, np.float32), realtime=False
        )

    async def send_text(self, text: str) -> None:
        assert self._ws is not None
        await self._ws.send_json({"type": "text", "text": text})

    async def send_key(self, digit: str) -> None:
        """A keypad digit (0 asks for a person)."""
        assert self._ws is not None
        await self._ws.send_json({"type": "dtmf", "digit": digit})

    async def ask(self, samples: np.ndarray, *, realtime: bool, timeout: float = 120) -> Turn:
        """Speak one question and wait for its reply (or for it to be ignored)."""
        seen, earlier = len(self.events), set(self.turns)
        last_voiced_at = await self.send_audio(samples, realtime=realtime)
        if not realtime:
            await self.send_silence(TRAILING_SILENCE_MS)

        def settled(event: dict[str, Any]) -> bool:
            if event.get("turn") in earlier:
                return False
            return event["type"] == "reply.end" or (
                event["type"] == "transcript.final" and event.get("ignored", False)
            )

        event = await self.wait_for(settled, since=seen, timeout=timeout)
        turn = self.turns[event["turn"]]
        if turn.first_audio_at is not None and realtime:
            turn.timings_ms["perceived"] = round((turn.first_audio_at - last_voiced_at) * 1000)
        return turn

    async def wait_for(self, match: Any, *, since: int = 0, timeout: float = 60) -> dict[str, Any]:
        """The first event from index `since` on for which `match(event)` is true."""
        deadline = time.monotonic() + timeout
        index = since
        while True:
            while index < len(self.events):
                if match(self.events[index]):
                    return self.events[index]
                index += 1
            if self._reader is not None and self._reader.done():
                raise ConnectionError(f"call closed ({self.close_code}) while waiting")
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching event within {timeout} s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    self._on_audio(message.data)
                elif message.type == aiohttp.WSMsgType.TEXT:
                    self._on_event(json.loads(message.data))
                self._changed.set()
        finally:
            self.close_code = self._ws.close_code
            self._changed.set()

    def _on_audio(self, data: bytes) -> None:
        if self.received is not None:
            self.received.append((time.monotonic(), data))
        if self._reply_turn is None:
            return
        turn = self.turns[self._reply_turn]
        now = time.monotonic()
        if turn.first_audio_at is None:
            turn.first_audio_at = now
        if turn.cleared:
            return
        bytes_per_s = self.format.bytes_per_sample * self.format.sample_rate
        if turn._playing_until is not None and now > turn._playing_until:
            stall_ms = round((now - turn._playing_until) * 1000)
            if stall_ms > turn.stall_ms:
                turn.stall_ms = stall_ms
                turn.stall_at_ms = len(turn.audio) * 1000 // bytes_per_s
        turn.audio.extend(data)
        turn._playing_until = max(turn._playing_until or now, now) + len(data) / bytes_per_s

    def _on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        number = event.get("turn")
        if number is None:
            return
        turn = self.turns.setdefault(number, Turn(turn=number))
        kind = event["type"]
        if kind == "transcript.final":
            turn.transcript = event["text"]
            turn.ignored = event.get("ignored", False)
            if not turn.ignored:
                self._reply_turn = number
        elif kind == "reply.text":
            self._reply_turn = number  # a supervisor's message has no transcript before it
        elif kind == "clear":
            turn.cleared = True
        elif kind == "reply.end":
            turn.reply = event["text"]
            turn.heard = event["heard"]
            turn.sources = event["sources"]
            turn.handoff = event["handoff"]
            turn.interrupted = event["interrupted"]
            turn.rules = event["rules"]
            turn.timings_ms.update(event["timings_ms"])
            turn.audio_ms = event.get("audio_ms", 0)
