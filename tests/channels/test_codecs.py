"""μ-law and PCM16 codecs, audio formats and resampling, on literal bytes and synthetic tones."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice.channels.codecs import (
    AudioFormat,
    CodecError,
    LiveResampler,
    StreamResampler,
    float_to_int16,
    int16_to_float,
    mulaw_decode,
    mulaw_encode,
    pcm16_decode,
    pcm16_encode,
    resample,
)

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


# ----------------------------------------------------------------------------- μ-law


@pytest.mark.parametrize(
    ("code", "sample"),
    [
        (0xFF, 0),
        (0x7F, 0),
        (0x00, -32124),
        (0x80, 32124),
        (0xFE, 8),
        (0x7E, -8),
        (0xEF, 132),
        (0x8F, 16764),
        (0xF0, 120),
    ],
)
def test_mulaw_decodes_g711_values(code, sample):
    assert mulaw_decode(bytes([code])).tolist() == [sample]


def test_mulaw_decode_is_int16_one_sample_per_byte():
    decoded = mulaw_decode(bytes(range(256)))
    assert decoded.dtype == np.int16
    assert len(decoded) == 256
    assert len(mulaw_decode(b"")) == 0


def test_mulaw_decode_table_is_odd_symmetric_and_monotonic():
    decoded = mulaw_decode(bytes(range(256))).astype(int)
    positive = decoded[0x80:]  # 0x80 (loudest) .. 0xFF (zero)
    assert np.all(np.diff(positive) < 0)
    assert np.array_equal(decoded[:0x80], -positive)


def test_mulaw_encode_inverts_decode_except_negative_zero():
    codes = bytes(range(256))
    encoded = mulaw_encode(mulaw_decode(codes))
    assert [i for i in range(256) if encoded[i] != codes[i]] == [0x7F]
    assert encoded[0x7F] == 0xFF


@pytest.mark.parametrize(
    ("sample", "code"),
    [(0, 0xFF), (-1, 0x7F), (1, 0xFF), (32767, 0x80), (-32768, 0x00), (32635, 0x80), (100, 0xF2)],
)
def test_mulaw_encodes_known_samples(sample, code):
    assert mulaw_encode(np.array([sample], dtype=np.int16)) == bytes([code])


def test_mulaw_round_trip_error_is_within_half_a_step():
    restored = mulaw_decode(mulaw_encode(ALL_INT16)).astype(int)
    error = np.abs(restored - ALL_INT16.astype(int))
    magnitude = np.abs(ALL_INT16.astype(int))
    unclipped = magnitude <= 32635
    # Segment e has steps of 2**(e+3) and the decoder returns the step's middle.
    assert np.all(error[unclipped] <= (magnitude[unclipped] + 132) / 32)
    assert error[unclipped].max() == 512
    assert np.all(restored[~unclipped] == np.sign(ALL_INT16[~unclipped]) * 32124)


def test_mulaw_encode_is_sign_symmetric():
    positive = np.arange(1, 32768, dtype=np.int16)
    up = np.frombuffer(mulaw_encode(positive), dtype=np.uint8)
    down = np.frombuffer(mulaw_encode(-positive), dtype=np.uint8)
    assert np.array_equal(up ^ 0x80, down)


def test_mulaw_encode_is_monotonic():
    decoded = mulaw_decode(mulaw_encode(ALL_INT16)).astype(int)
    assert np.all(np.diff(decoded) >= 0)


def test_encoders_want_int16():
    with pytest.raises(TypeError, match="float_to_int16"):
        mulaw_encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError):
        pcm16_encode(np.zeros(4, dtype=np.int32))


# ----------------------------------------------------------------------------- PCM16


def test_pcm16_is_little_endian():
    assert pcm16_decode(b"\x01\x00\xff\xff\x00\x80\xff\x7f").tolist() == [1, -1, -32768, 32767]
    assert pcm16_encode(np.array([1, -1, -32768, 32767], dtype=np.int16)) == (
        b"\x01\x00\xff\xff\x00\x80\xff\x7f"
    )


def test_pcm16_decode_gives_a_writable_native_array():
    samples = pcm16_decode(b"\x00\x01" * 4)
    assert samples.dtype == np.int16
    samples[0] = 5  # not a read-only view of the bytes


def test_pcm16_rejects_half_samples():
    with pytest.raises(CodecError, match=r"whole 16-bit samples; got 3 bytes\."):
        pcm16_decode(b"\x00\x01\x02")


@settings(max_examples=200)
@given(st.binary(max_size=512).filter(lambda b: len(b) % 2 == 0))
def test_pcm16_round_trips_any_bytes(data):
    assert pcm16_encode(pcm16_decode(data)) == data


# ----------------------------------------------------------------------------- int16 ↔ float


def test_int16_to_float_range():
    floats = int16_to_float(ALL_INT16)
    assert floats.dtype == np.float32
    assert floats.min() == -1.0
    assert floats.max() < 1.0


def test_int16_float_round_trip_is_exact():
    assert np.array_equal(float_to_int16(int16_to_float(ALL_INT16)), ALL_INT16)


def test_float_to_int16_clips_rounds_and_zeroes_nan():
    floats = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0, np.nan, 1.4 / 32768], dtype=np.float64)
    assert float_to_int16(floats).tolist() == [-32768, -32768, 0, 16384, 32767, 32767, 0, 1]
    assert float_to_int16(floats).dtype == np.int16


# ----------------------------------------------------------------------------- AudioFormat


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [("pcm16", 8000), ("pcm16", 16000), ("pcm16", 24000), ("pcm16", 48000), ("mulaw", 8000)],
)
def test_supported_formats_parse(encoding, rate):
    assert AudioFormat.parse(encoding, rate) == AudioFormat(encoding, rate)


@pytest.mark.parametrize(
    ("encoding", "rate", "message"),
    [
        ("mulaw", 16000, "mulaw audio must be sampled at 8000 Hz; got 16000 Hz."),
        ("pcm16", 44100, "8000, 16000, 24000, 48000 Hz; got 44100 Hz."),
        ("opus", 48000, "Unsupported audio encoding 'opus'"),
        (None, 8000, "must be a string"),
        ("pcm16", "16000", "whole number of Hz; got '16000'."),
        ("pcm16", 16000.0, "whole number of Hz"),
        ("pcm16", True, "whole number of Hz"),
        ("pcm16", None, "whole number of Hz"),
    ],
)
def test_unsupported_formats_are_refused_with_a_sentence(encoding, rate, message):
    with pytest.raises(CodecError, match=message) as raised:
        AudioFormat.parse(encoding, rate)
    assert str(raised.value).endswith(".")


def test_constructor_validates_too():
    with pytest.raises(CodecError):
        AudioFormat("mulaw", 48000)


def test_format_sizes():
    pcm, mulaw = AudioFormat("pcm16", 16000), AudioFormat("mulaw", 8000)
    assert (pcm.bytes_per_sample, mulaw.bytes_per_sample) == (2, 1)
    assert pcm.frame_bytes(20) == 640
    assert mulaw.frame_bytes(20) == 160
    assert AudioFormat("pcm16", 48000).frame_bytes(10) == 960
    assert pcm.duration_ms(640) == 20.0
    assert mulaw.duration_ms(800) == 100.0
    assert pcm.duration_ms(3202) == pytest.approx(100.0625)


def test_format_is_frozen_and_hashable():
    audio = AudioFormat("pcm16", 16000)
    with pytest.raises(AttributeError):
        audio.sample_rate = 8000  # type: ignore[misc]
    assert {audio, AudioFormat("pcm16", 16000)} == {audio}


def test_format_encode_decode_dispatch():
    samples = np.array([0, 1000, -1000, 32000], dtype=np.int16)
    pcm, mulaw = AudioFormat("pcm16", 24000), AudioFormat("mulaw", 8000)
    assert pcm.encode(samples) == pcm16_encode(samples)
    assert np.array_equal(pcm.decode(pcm.encode(samples)), samples)
    assert mulaw.encode(samples) == mulaw_encode(samples)
    assert len(mulaw.encode(samples)) == 4
    assert np.array_equal(mulaw.decode(b"\xff\x00"), [0, -32124])
    with pytest.raises(CodecError):
        pcm.decode(b"\x00")


# ----------------------------------------------------------------------------- resampling


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    window = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(window))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("in_rate", "out_rate"),
    [(48000, 16000), (22050, 8000), (8000, 16000), (22050, 24000), (16000, 48000)],
)
def test_resample_keeps_frequency_and_scales_length(in_rate, out_rate):
    out = resample(tone(1000, in_rate), in_rate, out_rate)
    assert out.dtype == np.float32
    assert abs(len(out) - out_rate) <= 1
    assert abs(peak_hz(out, out_rate) - 1000) <= 2
    middle = out[out_rate // 10 : -out_rate // 10]
    assert np.max(np.abs(middle)) == pytest.approx(0.5, abs=0.01)


def test_resample_removes_what_the_new_rate_cannot_hold():
    out = resample(tone(6000, 48000), 48000, 8000)  # above 8 kHz's 4 kHz Nyquist
    assert np.max(np.abs(out[800:-800])) < 0.001  # away from the tone's abrupt edges


def test_resample_int16_stays_int16():
    samples = float_to_int16(tone(440, 16000))
    out = resample(samples, 16000, 8000)
    assert out.dtype == np.int16
    assert abs(peak_hz(out.astype(np.float32), 8000) - 440) <= 2


def test_resample_equal_rates_is_identity():
    samples = tone(1000, 16000, 0.1)
    assert resample(samples, 16000, 16000) is samples


def test_resample_wants_mono():
    with pytest.raises(ValueError, match="mono"):
        resample(np.zeros((10, 2), dtype=np.float32), 16000, 8000)


def stream(resampler: StreamResampler, samples: np.ndarray, cuts: list[int]) -> np.ndarray:
    edges = zip([0, *cuts], [*cuts, len(samples)], strict=True)
    pieces = [resampler.process(samples[a:b]) for a, b in edges]
    return np.concatenate([*pieces, resampler.flush()])


@pytest.mark.parametrize(("in_rate", "out_rate"), [(48000, 16000), (22050, 8000), (8000, 16000)])
def test_streaming_in_fixed_chunks_matches_one_shot(in_rate, out_rate):
    samples = tone(1000, in_rate, 0.5)
    step = in_rate // 50  # 20 ms
    streamed = stream(
        StreamResampler(in_rate, out_rate), samples, list(range(step, len(samples), step))
    )
    whole = resample(samples, in_rate, out_rate)
    assert abs(len(streamed) - len(whole)) <= 1
    n = min(len(streamed), len(whole))
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([(48000, 16000), (22050, 8000), (16000, 24000), (24000, 8000)]),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_streaming_in_random_chunks_matches_one_shot(rates, cuts):
    in_rate, out_rate = rates
    samples = tone(1000, in_rate, 0.25) + tone(2500, in_rate, 0.25)
    cuts = sorted(c for c in cuts if c < len(samples))
    streamed = stream(StreamResampler(in_rate, out_rate), samples, cuts)
    whole = resample(samples, in_rate, out_rate)
    assert abs(len(streamed) - len(whole)) <= 1
    n = min(len(streamed), len(whole))
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3


def test_stream_resampler_int16_chunks():
    samples = float_to_int16(tone(1000, 48000, 0.2))
    resampler = StreamResampler(48000, 16000)
    out = stream(resampler, samples, [1000, 1001, 5000])
    assert out.dtype == np.int16
    assert abs(len(out) - len(samples) // 3) <= 1
    resampler.process(samples[:10])
    with pytest.raises(TypeError, match="int16"):
        resampler.process(int16_to_float(samples[:10]))


def test_stream_resampler_identity_and_empty():
    same = StreamResampler(16000, 16000)
    chunk = tone(1000, 16000, 0.02)
    assert same.process(chunk) is chunk
    assert len(same.flush()) == 0
    fresh = StreamResampler(16000, 8000)
    assert fresh.flush().dtype == np.float32
    assert len(fresh.process(np.zeros(0, dtype=np.float32))) == 0


def test_stream_resampler_starts_afresh_after_flush():
    resampler = StreamResampler(48000, 16000)
    samples = tone(1000, 48000, 0.1)
    first = stream(resampler, samples, [2400])
    second = stream(resampler, samples, [100, 3000])
    assert np.allclose(first, second, atol=1e-4)
    assert len(stream(resampler, float_to_int16(samples), [])) == len(first)


def test_stream_resampler_rejects_nonsense_rates():
    with pytest.raises(ValueError):
        StreamResampler(0, 16000)


def chunked(resampler: LiveResampler, samples: np.ndarray, step: int) -> list[np.ndarray]:
    return [resampler.process(samples[i : i + step]) for i in range(0, len(samples), step)]


@pytest.mark.parametrize(("in_rate", "out_rate"), [(16000, 8000), (8000, 16000), (48000, 16000)])
def test_live_resampling_gives_each_chunk_its_output_at_once_level_and_pitch_kept(
    in_rate, out_rate
):
    resampler = LiveResampler(in_rate, out_rate)
    pieces = chunked(resampler, tone(440, in_rate), in_rate // 50)
    assert all(len(piece) == out_rate // 50 for piece in pieces)  # 20 ms in, 20 ms out
    out = np.concatenate(pieces)[out_rate // 10 :]
    level = np.sqrt(2 * np.mean(out**2))
    assert abs(level - 0.5) < 0.01
    assert abs(peak_hz(out, out_rate) - 440) < 2
    assert resampler.delay_ms <= 3


def test_live_resampling_down_keeps_the_voice_band_and_drops_what_would_alias():
    resampler = LiveResampler(16000, 8000)
    kept = np.concatenate(chunked(resampler, tone(3000, 16000), 320))[800:]
    dropped = np.concatenate(chunked(LiveResampler(16000, 8000), tone(6000, 16000), 320))[800:]
    assert np.sqrt(2 * np.mean(kept**2)) > 0.45
    assert np.sqrt(2 * np.mean(dropped**2)) < 0.5 * 10 ** (-40 / 20)  # 40 dB down


def test_an_impulse_comes_out_after_the_filter_delay_not_a_block_later():
    resampler = LiveResampler(16000, 8000)
    impulse = np.zeros(1600, np.float32)
    impulse[800] = 1.0
    out = np.concatenate(chunked(resampler, impulse, 320))
    arrived_ms = np.argmax(np.abs(out)) / 8
    assert 50 <= arrived_ms <= 50 + resampler.delay_ms + 0.25  # sample 800 at 16 kHz: 50 ms
