"""Call recordings: a synthetic call (a 1 kHz caller, 440 Hz replies) written to a stereo WAV."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from voice.office.recording import REWIND_S, CallRecorder

RATE = 16_000
FRAME = RATE // 50  # 20 ms


def tone(hz: float, seconds: float, level: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def read(path: Path) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        frames = np.frombuffer(wav.readframes(params.nframes), dtype="<i2")
    return params, frames.reshape(-1, 2).astype(np.float32) / 32768


def energy(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def stream_caller(recorder: CallRecorder, audio: np.ndarray) -> None:
    for start in range(0, len(audio), FRAME):
        recorder.caller(audio[start : start + FRAME])


def test_a_synthetic_call(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path, sample_rate=RATE)
    caller = tone(1000, 6.0)
    stream_caller(recorder, caller[: 1 * RATE])  # 1 s of the caller
    reply = tone(440, 2.0)
    # the reply is sent in 20 ms frames, ahead of playback: it plays from 1.0 s to 3.0 s
    for start in range(0, len(reply), FRAME):
        recorder.assistant(reply[start : start + FRAME])
    stream_caller(recorder, caller[1 * RATE : 5 * RATE])
    # a second reply at 4.0 s, sent at once; the caller barges in at 4.5 s
    recorder.assistant(tone(440, 3.0), at_sample=4 * RATE)
    assert recorder.position == 5 * RATE
    recorder.clear_after(int(4.5 * RATE))
    stream_caller(recorder, caller[5 * RATE :])
    recorder.close()
    recorder.close()

    params, audio = read(path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, RATE)
    assert params.nframes == len(caller) == 6 * RATE
    left, right = audio[:, 0], audio[:, 1]
    np.testing.assert_allclose(left, caller, atol=1 / 32768)  # the caller, untouched, on the left

    spectrum = np.abs(np.fft.rfft(right))
    assert np.argmax(spectrum) * RATE / len(right) == pytest.approx(440, abs=1)
    assert spectrum[int(1000 * len(right) / RATE)] < spectrum.max() / 1000  # no caller on the right

    def right_between(a: float, b: float) -> float:
        return energy(right[int(a * RATE) : int(b * RATE)])

    assert right_between(0, 1) == 0  # nothing before the first reply
    assert right_between(1.0, 3.0) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    np.testing.assert_allclose(right[RATE : 3 * RATE], reply, atol=1 / 32768)  # at the offset
    assert right_between(3, 4) == 0
    assert right_between(4.0, 4.5) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert right_between(4.5, 6.0) == 0  # cleared: the caller never heard it


def test_overlapping_replies_mix(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav")
    stream_caller(recorder, np.zeros(RATE, dtype=np.float32))
    recorder.assistant(np.full(RATE // 2, 0.25, dtype=np.float32), at_sample=0)
    recorder.assistant(np.full(RATE // 2, 0.25, dtype=np.float32), at_sample=RATE // 4)
    recorder.close()
    _, audio = read(tmp_path / "call.wav")
    right = audio[:, 1]
    assert right[: RATE // 4] == pytest.approx(0.25, abs=1e-4)
    assert right[RATE // 4 : RATE // 2] == pytest.approx(0.5, abs=1e-4)
    assert right[RATE // 2 : 3 * RATE // 4] == pytest.approx(0.25, abs=1e-4)
    assert right[3 * RATE // 4 :] == pytest.approx(0, abs=1e-4)


def test_clear_at_the_caller_position_by_default(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav")
    stream_caller(recorder, np.zeros(RATE, dtype=np.float32))
    recorder.assistant(np.full(2 * RATE, 0.5, dtype=np.float32))  # 1.0 s to 3.0 s
    stream_caller(recorder, np.zeros(RATE // 2, dtype=np.float32))
    recorder.clear_after()  # barge-in at 1.5 s
    recorder.assistant(np.full(RATE // 4, 0.25, dtype=np.float32))  # the next reply: now
    stream_caller(recorder, np.zeros(RATE, dtype=np.float32))
    recorder.close()
    _, audio = read(tmp_path / "call.wav")
    right = audio[:, 1]
    assert len(right) == int(2.5 * RATE)
    assert right[RATE : int(1.5 * RATE)] == pytest.approx(0.5, abs=1e-4)
    assert right[int(1.5 * RATE) : int(1.75 * RATE)] == pytest.approx(0.25, abs=1e-4)
    assert right[int(1.75 * RATE) :] == pytest.approx(0, abs=1e-4)


def test_written_as_it_goes_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder(path)
    minute = tone(1000, 60.0, level=0.1)
    stream_caller(recorder, minute)
    # all but the rewind window is on disk, with a header a player can read
    params, audio = read(path)
    assert params.nframes == len(audio) >= len(minute) - (REWIND_S + 1) * RATE
    assert len(recorder._caller.data) < 4 * REWIND_S * RATE
    recorder.close()
    assert read(path)[0].nframes == len(minute)


def test_audio_placed_before_what_is_written_is_cut(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav")
    stream_caller(recorder, np.zeros(10 * RATE, dtype=np.float32))
    recorder.assistant(np.full(10 * RATE, 0.5, dtype=np.float32), at_sample=0)  # far too late
    recorder.close()
    _, audio = read(tmp_path / "call.wav")
    right = audio[:, 1]
    on_disk = int(np.argmax(right > 0))
    assert 10 * RATE - (REWIND_S + 1) * RATE < on_disk <= 10 * RATE - REWIND_S * RATE
    assert right[:on_disk] == pytest.approx(0)
    assert right[on_disk:] == pytest.approx(0.5, abs=1e-4)


def test_loud_and_odd_samples_are_clipped(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav")
    recorder.caller(np.array([2.0, -2.0, np.nan, 0.5], dtype=np.float64))
    recorder.close()
    _, audio = read(tmp_path / "call.wav")
    assert audio[:, 0].tolist() == pytest.approx([32767 / 32768, -1.0, 0.0, 0.5])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_raises_once_then_the_recording_stops() -> None:
    recorder = CallRecorder(Path("/dev/full"))  # every write: ENOSPC
    with pytest.raises(OSError, match="No space"):
        stream_caller(recorder, np.zeros(10 * RATE, dtype=np.float32))
    stream_caller(recorder, np.zeros(RATE, dtype=np.float32))  # ignored, no error
    recorder.assistant(np.zeros(RATE, dtype=np.float32))
    recorder.clear_after()
    recorder.close()


def test_audio_after_close_is_ignored(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path / "call.wav")
    recorder.caller(np.zeros(RATE, dtype=np.float32))
    recorder.close()
    recorder.caller(np.zeros(RATE, dtype=np.float32))
    recorder.assistant(np.zeros(RATE, dtype=np.float32))
    assert read(tmp_path / "call.wav")[0].nframes == RATE


def test_a_recording_that_fails_is_not_named_in_the_call_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voice.office.live import LiveHub
    from voice.office.monitor import CallMonitor
    from voice.office.records import CallRecord

    class Ends:
        def start_call(self, call: CallRecord) -> None:
            pass

        def end_call(self, call_id: str, at: float, reason: str, recording: str | None) -> None:
            self.recording = recording

    def full(self: CallRecorder, samples: np.ndarray) -> None:
        raise OSError(28, "No space left on device")

    store = Ends()
    monitor = CallMonitor(
        CallRecord("c1", "call", 0.0),
        LiveHub(),
        store,
        tmp_path,
        RATE,
        None,  # type: ignore[arg-type]
    )
    monitor.started()
    monkeypatch.setattr(CallRecorder, "caller", full)
    monitor.caller_audio(np.zeros(RATE, dtype=np.int16))
    monitor.ended("hangup")
    assert store.recording is None
    assert not (tmp_path / "c1.wav").exists()
