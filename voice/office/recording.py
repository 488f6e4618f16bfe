"""A call's recording: a stereo 16-bit WAV, the caller on the left, the assistant on the right.

The caller streams audio all through a call, so the caller's sample count is the call's
timeline; reply audio is placed on that timeline where the caller heard it.
"""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import numpy as np

from voice.channels.codecs import float_to_int16

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
REWIND_S = 2.0
"""How far behind the caller the recording stays open: reply audio placed or cleared up to this
long before the caller's position still lands; earlier than that it is on disk already."""
WRITE_EVERY_S = 0.5
"""The file is written in blocks of about this much audio."""
MAX_AHEAD_S = 600.0
"""Reply audio queued further ahead of the caller than this is dropped (with a warning)."""


class _Track:
    """One channel's samples from the first one not yet written, in a buffer that grows."""

    def __init__(self, capacity: int) -> None:
        self.data = np.zeros(capacity, dtype=np.float32)
        self.length = 0

    def mix(self, at: int, samples: np.ndarray, add: bool) -> None:
        end = at + len(samples)
        if end > len(self.data):
            grown = np.zeros(max(end, 2 * len(self.data)), dtype=np.float32)
            grown[: self.length] = self.data[: self.length]
            self.data = grown
        if add:
            self.data[at:end] += samples
        else:
            self.data[at:end] = samples
        self.length = max(self.length, end)

    def truncate(self, at: int) -> None:
        if at < self.length:
            self.data[at : self.length] = 0.0
            self.length = at

    def take(self, count: int) -> np.ndarray:
        """The first `count` samples (silence past the end); the rest move to the front."""
        out = np.zeros(count, dtype=np.float32)
        out[: min(count, self.length)] = self.data[: min(count, self.length)]
        rest = max(self.length - count, 0)
        self.data[:rest] = self.data[count : count + rest]
        self.data[rest : max(self.length, rest)] = 0.0
        self.length = rest
        return out


class CallRecorder:
    """Records one call to a stereo WAV as it happens, aligned in time.

    Cheap enough for the event loop: each call copies the frame into a numpy buffer, and about
    every `WRITE_EVERY_S` one block (about 32 KB) is written to the file through the OS cache,
    never synced. The file's header is kept right after each block, so a crash leaves a playable
    file. Memory stays bounded: `REWIND_S` + `WRITE_EVERY_S` of caller audio, and the reply audio
    queued ahead (at most `MAX_AHEAD_S`). Not thread-safe: one call's loop uses it. A file error
    raises OSError once, after which the file is closed as it stands (playable up to the last
    block written) and further audio is ignored; the call itself is not affected.

    Args:
        path: The WAV file to write; replaced if it exists.
        sample_rate: Of both channels, Hz; the audio given must be at this rate.
    """

    def __init__(self, path: Path, sample_rate: int = SAMPLE_RATE) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self._rewind = int(REWIND_S * sample_rate)
        self._block = max(int(WRITE_EVERY_S * sample_rate), 1)
        self._max_ahead = int(MAX_AHEAD_S * sample_rate)
        self._caller = _Track(self._rewind + 2 * self._block)
        self._assistant = _Track(self._rewind + 2 * self._block)
        self._written = 0
        """Timeline samples on disk; the tracks start here."""
        self._caller_at = 0
        self._assistant_end = 0
        """Where the reply audio queued so far ends, on the timeline."""
        # open for the call's whole life, closed by close(): no `with`
        self._wav: wave.Wave_write | None = wave.open(str(path), "wb")  # noqa: SIM115
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)

    @property
    def position(self) -> int:
        """The caller's position on the timeline: samples of caller audio so far."""
        return self._caller_at

    def caller(self, samples: np.ndarray) -> None:
        """Append the caller's audio (float32 in [-1, 1] at `sample_rate`)."""
        if self._wav is None:
            return
        samples = np.asarray(samples, dtype=np.float32).ravel()
        self._caller.mix(self._caller_at - self._written, samples, add=False)
        self._caller_at += len(samples)
        if self._caller_at - self._rewind - self._written >= self._block:
            self._write(self._caller_at - self._rewind - self._written)

    def assistant(self, samples: np.ndarray, at_sample: int | None = None) -> None:
        """Place reply audio (float32 at `sample_rate`) on the timeline, mixed with any already
        there.

        Args:
            at_sample: Where it starts on the caller's timeline. By default it plays out like a
                speaker: right after the reply audio queued before it, or now (the caller's
                position) when none is queued. Audio placed before what is on disk is cut.
        """
        if self._wav is None:
            return
        samples = np.asarray(samples, dtype=np.float32).ravel()
        at = max(self._caller_at, self._assistant_end) if at_sample is None else at_sample
        if at < self._written:
            samples, at = samples[self._written - at :], self._written
        room = self._caller_at + self._max_ahead - at
        if len(samples) > room:
            log.warning("%s: reply audio over %.0f s ahead dropped", self.path.name, MAX_AHEAD_S)
            samples = samples[: max(room, 0)]
        if len(samples) == 0:
            return
        self._assistant.mix(at - self._written, samples, add=True)
        self._assistant_end = max(self._assistant_end, at + len(samples))

    def clear_after(self, at_sample: int | None = None) -> None:
        """Drop the reply audio after `at_sample` (default: the caller's position): what the
        caller never heard because they barged in."""
        at = max(self._caller_at if at_sample is None else at_sample, self._written)
        self._assistant.truncate(at - self._written)
        self._assistant_end = min(self._assistant_end, at)

    def close(self) -> None:
        """Write the rest up to the caller's position and finish the file. Reply audio queued
        beyond it was never heard and is dropped. Closing twice does nothing; after closing,
        audio given is ignored."""
        if self._wav is None:
            return
        try:
            self._write(self._caller_at - self._written)
        finally:
            self._give_up()

    def _write(self, count: int) -> None:
        if self._wav is None or count <= 0:
            return
        frames = np.empty((count, 2), dtype="<i2")
        frames[:, 0] = float_to_int16(self._caller.take(count))
        frames[:, 1] = float_to_int16(self._assistant.take(count))
        self._written += count
        try:
            self._wav.writeframes(frames.tobytes())
        except OSError:
            self._give_up()
            raise

    def _give_up(self) -> None:
        """Close the file as it stands (after a failed write, too) and take no more audio."""
        wav, self._wav = self._wav, None
        try:
            if wav is not None:
                wav.close()
        except OSError as err:
            log.warning("%s: not closed cleanly: %s", self.path.name, err)
