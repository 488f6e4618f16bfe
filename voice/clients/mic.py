"""`voicedesk mic`: a call from this machine's microphone and speaker, for a kiosk with no browser.

The call, as a pipeline (PCM16 at 16 kHz on the wire):

    microphone → BlockHandoff → HalfDuplexGate → resample to 16 kHz → 20 ms frames → server
    server → reply audio → resample to the speaker's rate → PlaybackBuffer → speaker
    server → events → ConsoleView → the terminal

Half-duplex: while reply audio is playing, and for `echo_tail_ms` (300 ms) after it, the
microphone is not sent: silence of the same length goes instead, so the server's turn detection
and timing stay continuous. A bare sound card has no acoustic echo cancellation, so the
microphone hears the speaker, and the server would take its own reply for a caller speaking
over it — interrupt itself, then answer its own words. Barge-in by voice would need echo
cancellation; here the caller interrupts with Enter, which sends `{"type": "stop"}` (the server
stops the reply, sends `clear` and `reply.end` with `interrupted: true`). See docs/mic.md.

Nothing here runs a model: the server does. The audio device's threads only hand blocks over
(see `voice.clients.audio_device`); everything else runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp
import numpy as np

from voice.channels.codecs import AudioFormat, StreamResampler, float_to_int16, int16_to_float
from voice.clients.audio_device import AudioDevice, AudioDeviceError, BlockHandoff
from voice.clients.mic_terminal import ConsoleView, on_enter, on_signals

log = logging.getLogger(__name__)

CALL_FORMAT = AudioFormat("pcm16", 16000)
"""What the microphone is sent as, and what replies come back in."""

EVENT_HISTORY = 500
"""Server events kept in `MicCall.events` (the latest ones), for tests and debugging."""

StartServer = Callable[[contextlib.AsyncExitStack], Awaitable[str]]
"""Starts a server for this command only (stopped by the stack); returns its call URL."""


@dataclass(frozen=True)
class MicSettings:
    """How `voicedesk mic` handles audio; the defaults are what the command uses."""

    frame_ms: int = 20
    """Audio sent per binary frame (ms); also the microphone's block size."""
    echo_tail_ms: int = 300
    """How long the microphone stays muted after the speaker falls silent (room echo)."""
    half_duplex: bool = True
    """False sends the microphone even while the reply plays: only with a headset or a device
    that cancels echo itself."""
    input_queue_blocks: int = 50
    """Microphone blocks waiting for the event loop at most (1 s at 20 ms); more are dropped."""
    connect_timeout_s: float = 10.0
    """Connecting and getting `ready` from the server, at most (s)."""
    hangup_timeout_s: float = 3.0
    """Waiting for the server's `end` after our hangup, at most (s)."""
    token: str | None = None
    """The caller token, for a server that asks for one (`auth.caller_tokens`)."""


class CallFailed(Exception):
    """The server could not be reached, refused the call or ended it. One line for the user."""


class HalfDuplexGate:
    """Decides per microphone block whether it is sent or replaced by silence.

    The speaker counts as playing until the latest `speaker_queued` says it will have played
    out, or until `speaker_cut`; the microphone stays shut for `tail_s` after that. Times are
    seconds on one clock (`time.monotonic()` in use). Pure: no clock or device of its own.
    """

    def __init__(self, tail_s: float) -> None:
        self.tail_s = tail_s
        self.playing_until = -math.inf

    def speaker_queued(self, now: float, pending_s: float) -> None:
        """At `now` the speaker had `pending_s` seconds of audio still to play."""
        if pending_s > 0:
            self.playing_until = max(self.playing_until, now + pending_s)

    def speaker_cut(self, now: float) -> None:
        """The speaker's queue was dropped at `now` (a `clear`): it is silent from now on."""
        self.playing_until = min(self.playing_until, now)

    def is_open(self, now: float) -> bool:
        return now >= self.playing_until + self.tail_s

    def admit(self, block: np.ndarray, now: float) -> np.ndarray:
        """`block` itself when the microphone is open at `now`, else zeros of its length."""
        return block if self.is_open(now) else np.zeros_like(block)


class Framer:
    """Cuts a stream of int16 chunks of any length into frames of `size` samples."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """The whole frames now available; the rest waits for the next chunk."""
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(data) // self.size * self.size
        self._pending = data[whole:].copy()
        return [data[i : i + self.size] for i in range(0, whole, self.size)]


class MicCall:
    """A call from an `AudioDevice` to a server: `async with MicCall(...) as call:` opens the
    device (raises `AudioDeviceError`), `await call.run(url, stop)` talks until `stop` is set.

    Not thread-safe: use it on one event loop. One call per object.
    """

    def __init__(
        self, device: AudioDevice, out: TextIO, settings: MicSettings | None = None
    ) -> None:
        self.settings = settings or MicSettings()
        self.view = ConsoleView(out)
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_HISTORY)
        self._device = device
        self._gate = HalfDuplexGate(self.settings.echo_tail_ms / 1000)
        self._stop_requests: asyncio.Queue[None] = asyncio.Queue(maxsize=4)
        self._replying = False  # reply text or audio has come and the reply has not ended
        self._discarding = False  # Enter was pressed: drop reply audio until `clear`
        self._held = False  # waiting for a person, or one holds the call: audio is no reply
        self._play_resampler: StreamResampler | None = None

    async def __aenter__(self) -> MicCall:
        self._blocks = BlockHandoff(asyncio.get_running_loop(), self.settings.input_queue_blocks)
        rate = CALL_FORMAT.sample_rate
        self._output = self._device.open_output(rate)
        try:
            self._input = self._device.open_input(rate, self.settings.frame_ms, self._blocks.put)
        except BaseException:
            self._output.close()
            raise
        if self._output.sample_rate != rate:
            self._play_resampler = StreamResampler(rate, self._output.sample_rate)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._blocks.listening = False
        await asyncio.to_thread(self._input.close)
        await asyncio.to_thread(self._output.close)
        if self._blocks.dropped:
            log.warning("%d microphone blocks dropped: the loop fell behind", self._blocks.dropped)

    def press_enter(self) -> None:
        """Stop the reply now (the Enter key): local playback stops at once, and the server is
        asked to stop. Does nothing unless a reply has begun (text or audio) and not ended."""
        if not self._replying:
            return
        self._discarding = True
        self._drop_playback()
        self.view.stopping()
        with contextlib.suppress(asyncio.QueueFull):  # a stop is already on its way
            self._stop_requests.put_nowait(None)

    async def run(self, url: str, stop: asyncio.Event) -> None:
        """Call `url` and talk until `stop` is set, then hang up.

        Raises:
            CallFailed: the server cannot be reached, refuses the call or ends it.
        """
        async with aiohttp.ClientSession() as session:
            ws = await self._connect(session, url)
            try:
                await self._talk(ws, stop)
            finally:
                await ws.close()

    async def _connect(
        self, session: aiohttp.ClientSession, url: str
    ) -> aiohttp.ClientWebSocketResponse:
        start = {
            "type": "start",
            "version": 2,
            "audio": {"encoding": CALL_FORMAT.encoding, "sample_rate": CALL_FORMAT.sample_rate},
            "metadata": {"client": "voicedesk mic"},
        }
        if self.settings.token is not None:
            start["token"] = self.settings.token
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                ws = await session.ws_connect(url, max_msg_size=1 << 20)
                await ws.send_json(start)
                message = await ws.receive()
        except TimeoutError as err:
            raise CallFailed(
                f"cannot reach the server at {url} (no answer in "
                f"{self.settings.connect_timeout_s:g} s)"
            ) from err
        except (aiohttp.ClientError, OSError, ValueError) as err:
            raise CallFailed(f"cannot reach the server at {url} ({err})") from err
        event = _event(message.data) if message.type == aiohttp.WSMsgType.TEXT else None
        if event is None or event.get("type") != "ready":
            await ws.close()
            detail = event.get("message", event) if event else f"close {ws.close_code}"
            raise CallFailed(f"the server at {url} refused the call: {detail}")
        self._on_event(event)
        return ws

    async def _talk(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
        self._blocks.listening = True
        sender = asyncio.create_task(self._send_microphone(ws))
        stopper = asyncio.create_task(self._send_stops(ws))
        reader = asyncio.create_task(self._read(ws))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({reader, stopped, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._blocks.listening = False
            for task in (sender, stopper, stopped):
                task.cancel()
            await asyncio.gather(sender, stopper, stopped, return_exceptions=True)
        failure = None if sender.cancelled() else sender.exception()
        if not reader.done():  # we hang up: asked to, or the microphone stream failed
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json({"type": "hangup"})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.hangup_timeout_s):
                    await asyncio.shield(reader)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            self._drop_playback()
            if failure is not None:
                raise CallFailed(f"sending the microphone failed ({failure!r})") from failure
            return
        self._drop_playback()
        ended = [event for event in self.events if event.get("type") in ("end", "error")]
        reason = ", ".join(str(e.get("reason") or e.get("message")) for e in ended[-2:])
        raise CallFailed(f"the server ended the call ({reason or f'close {ws.close_code}'})")

    async def _send_microphone(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        in_rate = self._input.sample_rate
        resampler = StreamResampler(in_rate, CALL_FORMAT.sample_rate)
        framer = Framer(CALL_FORMAT.sample_rate * self.settings.frame_ms // 1000)
        while True:
            block = await self._blocks.get()
            if block.dtype == np.int16:
                block = int16_to_float(block)
            now = time.monotonic()
            self._gate.speaker_queued(now, self._output.pending_s())
            if self.settings.half_duplex:
                block = self._gate.admit(block, now)
            samples = resampler.process(block.astype(np.float32, copy=False))
            for frame in framer.push(float_to_int16(samples)):
                await ws.send_bytes(CALL_FORMAT.encode(frame))

    async def _send_stops(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await self._stop_requests.get()
            await ws.send_json({"type": "stop"})

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                self._play(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                event = _event(message.data)
                if event is not None:
                    self._on_event(event)

    def _play(self, data: bytes) -> None:
        if self._discarding:
            return
        if not self._held:  # hold audio and a person's voice are no reply for Enter to stop
            self._replying = True
        samples = CALL_FORMAT.decode(data)
        if self._play_resampler is not None:
            samples = self._play_resampler.process(samples)
        self._output.write(samples)
        self._gate.speaker_queued(time.monotonic(), self._output.pending_s())

    def _on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        kind = event.get("type")
        if kind == "reply.text":
            self._replying = True
        elif kind == "hold":
            self._held = event.get("state") in ("waiting", "person")
        elif kind == "clear":
            self._drop_playback()
        if kind in ("clear", "reply.end"):
            self._replying = self._discarding = False
        self.view.show(event)

    def _drop_playback(self) -> None:
        self._output.clear()
        if self._play_resampler is not None:
            self._play_resampler = StreamResampler(
                CALL_FORMAT.sample_rate, self._output.sample_rate
            )
        self._gate.speaker_cut(time.monotonic())


def _event(data: Any) -> dict[str, Any] | None:
    try:
        event = json.loads(data)
    except (TypeError, ValueError):
        return None
    return event if isinstance(event, dict) else None


def run_mic(
    url: str | None,
    start_server: StartServer,
    *,
    device: Callable[[], AudioDevice] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    settings: MicSettings | None = None,
) -> int:
    """The `voicedesk mic` command: 0 after Ctrl-C, 1 when the server cannot be reached or ends
    the call, 2 without a usable microphone or speaker. `device` makes the audio device
    (default: the sound card); without `url`, `start_server` is called for one."""
    if device is None:
        from voice.clients.audio_device import SoundDevice

        device = SoundDevice
    return asyncio.run(
        _main(url, start_server, device, out or sys.stdout, err or sys.stderr, settings)
    )


async def _main(
    url: str | None,
    start_server: StartServer,
    device: Callable[[], AudioDevice],
    out: TextIO,
    err: TextIO,
    settings: MicSettings | None,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with on_signals(loop, stop.set):
        try:
            async with contextlib.AsyncExitStack() as stack:
                call = await stack.enter_async_context(MicCall(device(), out, settings))
                if url is None:
                    print("starting a server in this process (loading the models)…", file=out)
                    out.flush()
                    url = await start_server(stack)
                with on_enter(loop, call.press_enter):
                    await call.run(url, stop)
        except AudioDeviceError as error:
            print(f"voicedesk mic: {error}", file=err)
            return 2
        except CallFailed as error:
            print(f"voicedesk mic: {error}", file=err)
            return 1
    return 0
