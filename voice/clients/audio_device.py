"""The sound card behind a small interface, for `voicedesk mic`.

`voice.clients.mic` talks to an `AudioDevice`: an input stream that hands float32 mono blocks to a
callback, and an output that takes int16 mono blocks and can be cleared. `SoundDevice` is the
real one (PortAudio through the `sounddevice` package); the tests use fakes that play recorded
speech. This layer does no resampling and knows nothing of calls: it opens the default devices at
the rate asked for when they take it, at their own rate otherwise, and says which.

Threads: PortAudio runs stream callbacks in its own thread, and they must never wait. Input
blocks reach the event loop through `BlockHandoff` (`call_soon_threadsafe` into a bounded
`asyncio.Queue`; a block that finds it full is dropped and counted). The output callback takes
its samples from a `PlaybackBuffer`, under a lock held only while samples are copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

OnBlock = Callable[[np.ndarray], None]
"""Receives one block of float32 mono samples; called from any thread, must not wait."""

PLAYBACK_BUFFER_S = 10.0
"""Reply audio held for the speaker at most (s); the server sends 0.3 s ahead of real time, so
only a stalled speaker fills it, and then the oldest audio goes first."""

NO_DEVICE_HINT = "Connect one, or use `voicedesk call FILE` / the kiosk page."


class AudioDeviceError(Exception):
    """No usable microphone or speaker. The message is one line for the person at the box."""


class AudioInput(Protocol):
    """A started microphone stream; it calls its `OnBlock` until closed."""

    sample_rate: int
    """Samples per second (Hz) of the blocks it delivers."""

    def close(self) -> None:
        """Stop the stream; no block is delivered after it returns."""


class AudioOutput(Protocol):
    """A started speaker stream, fed with int16 mono samples at `sample_rate`."""

    sample_rate: int
    """Samples per second (Hz) that `write` takes."""

    def write(self, samples: np.ndarray) -> None:
        """Queue int16 samples to play after what is queued; never waits."""

    def clear(self) -> None:
        """Drop everything queued and not yet played, at once."""

    def pending_s(self) -> float:
        """Seconds until what is queued has left the speaker; 0 when nothing is queued."""

    def close(self) -> None:
        """Stop the stream; queued audio is dropped."""


class AudioDevice(Protocol):
    """A microphone and a speaker. Opening raises `AudioDeviceError`."""

    def open_input(self, preferred_rate: int, block_ms: int, on_block: OnBlock) -> AudioInput:
        """Start the microphone: mono blocks of `block_ms` to `on_block`, at `preferred_rate`
        when the device takes it, at its own rate otherwise (see `AudioInput.sample_rate`)."""
        ...

    def open_output(self, preferred_rate: int) -> AudioOutput:
        """Start the speaker at `preferred_rate` when the device takes it, its own otherwise."""
        ...


class PlaybackBuffer:
    """Samples waiting for the speaker: int16 in, fixed-size blocks out, zeros when it runs dry.

    Bounded: past `max_samples` the oldest samples are dropped and counted in `dropped`.
    Thread-safe: written on the event loop, read in the audio callback.
    """

    def __init__(self, max_samples: int) -> None:
        if max_samples <= 0:
            raise ValueError(f"max_samples must be positive; got {max_samples}")
        self.max_samples = max_samples
        self.dropped = 0
        """Samples dropped because the buffer was full (not those dropped by `clear`)."""
        self._chunks: deque[np.ndarray] = deque()
        self._offset = 0  # samples of the first chunk already played
        self._buffered = 0
        self._lock = threading.Lock()

    @property
    def buffered(self) -> int:
        """Samples queued and not yet pulled."""
        return self._buffered

    def push(self, samples: np.ndarray) -> None:
        """Queue int16 mono samples (copied)."""
        chunk = np.array(samples, dtype=np.int16, copy=True).reshape(-1)
        if not len(chunk):
            return
        with self._lock:
            self._chunks.append(chunk)
            self._buffered += len(chunk)
            excess = self._buffered - self.max_samples
            while excess > 0:
                left = len(self._chunks[0]) - self._offset
                if left <= excess:
                    self._chunks.popleft()
                    self._offset = 0
                    taken = left
                else:
                    self._offset += excess
                    taken = excess
                self._buffered -= taken
                self.dropped += taken
                excess -= taken

    def pull_into(self, out: np.ndarray) -> int:
        """Fill the int16 array `out` with the next samples, zeros after the last; returns how
        many were real samples. For the audio callback: no allocation but the slices."""
        filled = 0
        with self._lock:
            while filled < len(out) and self._chunks:
                head = self._chunks[0]
                count = min(len(head) - self._offset, len(out) - filled)
                out[filled : filled + count] = head[self._offset : self._offset + count]
                filled += count
                self._offset += count
                if self._offset == len(head):
                    self._chunks.popleft()
                    self._offset = 0
            self._buffered -= filled
        out[filled:] = 0
        return filled

    def pull(self, count: int) -> np.ndarray:
        """The next `count` samples, padded with zeros."""
        out = np.empty(count, dtype=np.int16)
        self.pull_into(out)
        return out

    def clear(self) -> int:
        """Drop every queued sample; returns how many."""
        with self._lock:
            dropped, self._buffered = self._buffered, 0
            self._chunks.clear()
            self._offset = 0
        return dropped


class BlockHandoff:
    """Microphone blocks from the audio thread to the event loop.

    `put` may be called from any thread and never waits; `get` runs on the loop. Blocks are
    dropped until `listening` is set (before the call is up nobody reads them), and when the
    queue already holds `maxsize` blocks (the loop fell behind): those are counted in `dropped`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.listening = False
        self._loop = loop
        self._queue: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize)
        self._dropped_in_thread = 0  # written by the audio thread only
        self._dropped_on_loop = 0  # written by the loop only

    @property
    def dropped(self) -> int:
        """Blocks dropped because the queue was full."""
        return self._dropped_in_thread + self._dropped_on_loop

    def put(self, block: np.ndarray) -> None:
        """Hand a block to the loop (any thread; the block must not be reused by the caller)."""
        if not self.listening:
            return
        if self._queue.full():  # a racy peek, but it keeps a stalled loop from piling up work
            self._dropped_in_thread += 1
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: the stream outlived the call
            self._loop.call_soon_threadsafe(self._enqueue, block)

    def _enqueue(self, block: np.ndarray) -> None:
        try:
            self._queue.put_nowait(block)
        except asyncio.QueueFull:
            self._dropped_on_loop += 1

    async def get(self) -> np.ndarray:
        """The next block. Cancelling it is safe: no block is lost."""
        return await self._queue.get()


# ----------------------------------------------------------------------------- sounddevice


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as err:  # the package is there, the PortAudio library is not
        raise AudioDeviceError(
            f"no sound system found ({err}; on Debian or Ubuntu: apt install libportaudio2). "
            "Use `voicedesk call FILE` or the kiosk page instead."
        ) from err
    except ImportError as err:
        raise AudioDeviceError(
            "the sounddevice package is not installed (pip install sounddevice). "
            "Use `voicedesk call FILE` or the kiosk page instead."
        ) from err
    return sounddevice


class SoundDevice:
    """The default microphone and speaker, through PortAudio (the `sounddevice` package).

    Constructing it checks that PortAudio loads and that there is a default input and output.

    Raises:
        AudioDeviceError: no PortAudio, no microphone or no speaker.
    """

    def __init__(self) -> None:
        self._sd = _import_sounddevice()
        self._device_info("input", "microphone")
        self._device_info("output", "speaker")

    def _device_info(self, kind: str, noun: str) -> dict[str, Any]:
        try:
            return dict(self._sd.query_devices(kind=kind))
        except (self._sd.PortAudioError, ValueError) as err:
            raise AudioDeviceError(f"no {noun} found (PortAudio: {err}). {NO_DEVICE_HINT}") from err

    def _rate(self, kind: str, noun: str, preferred: int, dtype: str) -> int:
        check = self._sd.check_input_settings if kind == "input" else self._sd.check_output_settings
        try:
            check(samplerate=preferred, channels=1, dtype=dtype)
            return preferred
        except (self._sd.PortAudioError, ValueError):
            return int(self._device_info(kind, noun)["default_samplerate"])

    def open_input(self, preferred_rate: int, block_ms: int, on_block: OnBlock) -> AudioInput:
        rate = self._rate("input", "microphone", preferred_rate, "float32")

        def callback(indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
            on_block(indata[:, 0].copy())

        try:
            stream = self._sd.InputStream(
                samplerate=rate,
                channels=1,
                dtype="float32",
                blocksize=rate * block_ms // 1000,
                callback=callback,
            )
            stream.start()
        except (self._sd.PortAudioError, ValueError) as err:
            raise AudioDeviceError(
                f"cannot open the microphone (PortAudio: {err}). {NO_DEVICE_HINT}"
            ) from err
        return _SoundInput(stream, rate)

    def open_output(self, preferred_rate: int) -> AudioOutput:
        rate = self._rate("output", "speaker", preferred_rate, "int16")
        buffer = PlaybackBuffer(int(rate * PLAYBACK_BUFFER_S))

        def callback(outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
            buffer.pull_into(outdata[:, 0])

        try:
            stream = self._sd.OutputStream(
                samplerate=rate, channels=1, dtype="int16", callback=callback
            )
            stream.start()
        except (self._sd.PortAudioError, ValueError) as err:
            raise AudioDeviceError(
                f"cannot open the speaker (PortAudio: {err}). {NO_DEVICE_HINT}"
            ) from err
        return _SoundOutput(stream, rate, buffer)


class _SoundInput:
    def __init__(self, stream: Any, sample_rate: int) -> None:
        self._stream = stream
        self.sample_rate = sample_rate

    def close(self) -> None:
        self._stream.close()


class _SoundOutput:
    def __init__(self, stream: Any, sample_rate: int, buffer: PlaybackBuffer) -> None:
        self._stream = stream
        self._buffer = buffer
        self.sample_rate = sample_rate

    def write(self, samples: np.ndarray) -> None:
        self._buffer.push(samples)

    def clear(self) -> None:
        self._buffer.clear()

    def pending_s(self) -> float:
        queued = self._buffer.buffered
        if not queued:
            return 0.0
        return queued / self.sample_rate + float(self._stream.latency)

    def close(self) -> None:
        self._buffer.clear()
        self._stream.close()
