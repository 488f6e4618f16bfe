"""Audio codecs (G.711 μ-law, PCM16) and resampling, as pure functions on bytes and arrays.

Samples travel between stages as mono numpy arrays: int16 on the wire side, float32 in
[-1, 1) for models. Nothing here keeps state across calls except `StreamResampler`, which
belongs to one audio stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import soxr

Encoding = Literal["pcm16", "mulaw"]

SUPPORTED_RATES: dict[str, tuple[int, ...]] = {
    "pcm16": (8000, 16000, 24000, 48000),
    "mulaw": (8000,),
}
"""Sample rates (Hz) the server takes for each encoding."""

RESAMPLE_QUALITY = "HQ"
"""soxr quality: "HQ" is transparent for speech at these rates; "VHQ" costs more for nothing
a caller could hear."""


class CodecError(ValueError):
    """Audio that cannot be decoded, or a format the server does not take. The message is a
    sentence fit to send to the caller."""


# ----------------------------------------------------------------------------- G.711 μ-law

_MULAW_BIAS = 0x84
_MULAW_CLIP = 32635


def _mulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


_MULAW_DECODE = _mulaw_table()
"""The 256 G.711 μ-law code words as linear int16 samples."""

_MULAW_EXPONENT = np.array([max(0, i.bit_length() - 1) for i in range(256)], dtype=np.int32)
"""Segment number of a biased magnitude, looked up by its bits 7..14."""


def mulaw_decode(data: bytes) -> np.ndarray:
    """G.711 μ-law bytes to int16 samples (one sample per byte)."""
    return _MULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def mulaw_encode(samples: np.ndarray) -> bytes:
    """Int16 samples to G.711 μ-law bytes, by the reference bias-0x84 algorithm.

    Magnitudes above 32635 clip to the loudest code. Zero encodes as 0xFF (0x7F, "negative
    zero", also decodes to 0 but is never produced).
    """
    linear = _as_int16(samples).astype(np.int32)
    sign = np.where(linear < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(linear), _MULAW_CLIP) + _MULAW_BIAS
    exponent = _MULAW_EXPONENT[magnitude >> 7]
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


# ----------------------------------------------------------------------------- PCM16


def pcm16_decode(data: bytes) -> np.ndarray:
    """Little-endian 16-bit PCM bytes to int16 samples (native byte order, writable).

    Raises:
        CodecError: `data` holds half a sample.
    """
    if len(data) % 2:
        raise CodecError(f"PCM16 audio must hold whole 16-bit samples; got {len(data)} bytes.")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def pcm16_encode(samples: np.ndarray) -> bytes:
    """Int16 samples to little-endian 16-bit PCM bytes."""
    return _as_int16(samples).astype("<i2", copy=False).tobytes()


def _as_int16(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples)
    if array.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {array.dtype}; see float_to_int16")
    return array


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    """Int16 samples to float32 in [-1, 1): -32768 → -1.0, 32767 → 0.99997."""
    return np.asarray(samples).astype(np.float32) / np.float32(32768)


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16, rounded; louder samples clip and NaN becomes 0."""
    with np.errstate(over="ignore"):  # values past float32 (or infinities) clip like the rest
        scaled = np.nan_to_num(np.asarray(samples, dtype=np.float32), nan=0.0) * np.float32(32768)
    return np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)


# ----------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class AudioFormat:
    """How a caller's audio travels on the wire: mono, one encoding, one sample rate.

    Constructing an unsupported combination raises `CodecError`; `parse` also checks types,
    for values that come straight from JSON.
    """

    encoding: Encoding
    """"pcm16" (little-endian signed 16-bit) or "mulaw" (G.711 μ-law, 8 bits)."""
    sample_rate: int
    """Samples per second (Hz)."""

    def __post_init__(self) -> None:
        rates = SUPPORTED_RATES.get(self.encoding)
        if rates is None:
            raise CodecError(
                f"Unsupported audio encoding {self.encoding!r}; use 'pcm16' or 'mulaw'."
            )
        if self.sample_rate not in rates:
            allowed = ", ".join(str(rate) for rate in rates)
            # str() refuses ints of over 4,300 digits (ValueError); no such rate needs showing.
            got = (
                f"{self.sample_rate} Hz" if abs(self.sample_rate) < 10**9 else "ten digits or more"
            )
            raise CodecError(f"{self.encoding} audio must be sampled at {allowed} Hz; got {got}.")

    @classmethod
    def parse(cls, encoding: object, sample_rate: object) -> AudioFormat:
        """A format from loosely typed values (e.g. a parsed JSON object).

        Raises:
            CodecError: a missing or mistyped value, or an unsupported combination.
        """
        if not isinstance(encoding, str):
            raise CodecError("The audio encoding must be a string: 'pcm16' or 'mulaw'.")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
            raise CodecError(
                f"The audio sample_rate must be a whole number of Hz; got {sample_rate!r}."
            )
        return cls(cast(Encoding, encoding), sample_rate)

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm16" else 1

    def frame_bytes(self, ms: int) -> int:
        """Bytes in `ms` milliseconds of audio (whole samples, rounded down)."""
        return self.sample_rate * ms // 1000 * self.bytes_per_sample

    def duration_ms(self, nbytes: int) -> float:
        """Milliseconds of audio in `nbytes` bytes."""
        return nbytes / self.bytes_per_sample * 1000 / self.sample_rate

    def decode(self, data: bytes) -> np.ndarray:
        """Wire bytes to int16 samples.

        Raises:
            CodecError: PCM16 data of odd length.
        """
        return pcm16_decode(data) if self.encoding == "pcm16" else mulaw_decode(data)

    def encode(self, samples: np.ndarray) -> bytes:
        """Int16 samples to wire bytes."""
        return pcm16_encode(samples) if self.encoding == "pcm16" else mulaw_encode(samples)


# ----------------------------------------------------------------------------- resampling


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Mono samples at `in_rate` Hz resampled to `out_rate` Hz, dtype kept (int16 or float).

    The whole signal at once; `samples` itself is returned when the rates are equal.
    """
    array = _mono(samples)
    if in_rate == out_rate:
        return array
    return soxr.resample(array, in_rate, out_rate, quality=RESAMPLE_QUALITY)


class StreamResampler:
    """Resamples one continuous mono stream chunk by chunk, without clicks at chunk edges.

    The first chunk fixes the dtype (int16, int32, float32 or float64); later chunks must
    match and come back in it. Output lags input by the filter's delay; `flush` returns the
    tail. After `flush` the resampler starts a new stream. One per stream: not thread-safe.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive; got {in_rate} → {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream: soxr.ResampleStream | None = None
        self._dtype: np.dtype | None = None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """The output now available for `chunk` (possibly empty)."""
        array = _mono(chunk)
        if self._dtype is None:
            self._dtype = array.dtype
        elif array.dtype != self._dtype:
            raise TypeError(f"this stream carries {self._dtype}; got a {array.dtype} chunk")
        if self.in_rate == self.out_rate:
            return array
        if self._stream is None:
            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, 1, dtype=array.dtype.name, quality=RESAMPLE_QUALITY
            )
        return self._stream.resample_chunk(np.ascontiguousarray(array))

    def flush(self) -> np.ndarray:
        """The rest of the stream's output; float32 if no chunk came."""
        dtype = self._dtype if self._dtype is not None else np.dtype(np.float32)
        stream, self._stream, self._dtype = self._stream, None, None
        if stream is None:
            return np.zeros(0, dtype=dtype)
        return stream.resample_chunk(np.zeros(0, dtype=dtype), last=True)


LIVE_TAPS_PER_PHASE = 16
"""Taps of `LiveResampler`'s filter each side of its centre, per step of the slower rate."""


class LiveResampler:
    """Resamples one continuous mono float32 stream chunk by chunk with a short linear-phase FIR
    (a Kaiser-windowed sinc): each chunk's output comes at once, a millisecond or two behind,
    where `StreamResampler` (soxr HQ) gives its output in blocks of about 100 ms. For audio a
    person hears live (a supervisor's voice, listening in); speech quality, not music's.
    One per stream: not thread-safe."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive; got {in_rate} → {out_rate}")
        common = math.gcd(in_rate, out_rate)
        self._up, self._down = out_rate // common, in_rate // common
        widest = max(self._up, self._down)
        size = 2 * LIVE_TAPS_PER_PHASE * widest + 1
        centre = np.arange(size) - (size - 1) / 2
        cutoff = 1.0 / widest  # of the upsampled stream's Nyquist rate
        taps = cutoff * np.sinc(cutoff * centre) * np.kaiser(size, 8.0)
        self._taps = (taps * self._up / taps.sum()).astype(
            np.float32
        )  # the gain zero-stuffing lost
        self.delay_ms = 0.0 if in_rate == out_rate else (size - 1) / 2 / (in_rate * self._up) * 1000
        """How far the output lags the input."""
        self._history = np.zeros(size - 1, np.float32)
        self._phase = 0
        """Where the next output sample falls in the upsampled stream's next chunk."""

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """The output for `chunk` (float32)."""
        samples = np.asarray(chunk, np.float32)
        if self._up == self._down:
            return samples
        stuffed = np.zeros(len(samples) * self._up, np.float32)
        stuffed[:: self._up] = samples
        stream = np.concatenate([self._history, stuffed])
        filtered = np.convolve(stream, self._taps, "valid")
        self._history = stream[len(stream) - len(self._history) :]
        out = filtered[self._phase :: self._down]
        self._phase = (self._phase - len(filtered)) % self._down
        return out.astype(np.float32)


def _mono(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples (one dimension); got shape {array.shape}")
    return array
