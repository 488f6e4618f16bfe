"""Streaming voice-activity detection with the Silero VAD model that faster-whisper ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime

SAMPLE_RATE = 16_000
WINDOW = 512
"""Samples per VAD decision at 16 kHz (32 ms)."""
WINDOW_MS = WINDOW * 1000 // SAMPLE_RATE
_CONTEXT = 64


def default_model_path() -> Path:
    """The Silero ONNX file inside the installed faster-whisper."""
    import faster_whisper

    assets = Path(faster_whisper.__file__).parent / "assets"
    found = sorted(assets.glob("silero_vad*.onnx"))
    if not found:
        raise FileNotFoundError(f"no Silero VAD model in {assets}")
    return found[-1]


class VadModel:
    """The loaded Silero model. One instance serves every call; `stream()` gives per-call state."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_model_path()
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def stream(self) -> VadStream:
        return VadStream(self._session)


class VadStream:
    """One call's VAD: feed 16 kHz float32 audio of any length, get one probability per window.

    Not thread-safe; run `process` off the event loop, one call at a time per stream.
    """

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self._session = session
        self._state_h = np.zeros((1, 1, 128), dtype=np.float32)
        self._state_c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def process(self, audio: np.ndarray) -> list[float]:
        """Speech probabilities (0..1) for each whole 32 ms window completed by `audio`."""
        samples = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        whole = len(samples) // WINDOW * WINDOW
        self._pending = samples[whole:]
        probabilities = []
        for start in range(0, whole, WINDOW):
            window = samples[start : start + WINDOW]
            batch = np.concatenate([self._context, window])[np.newaxis, :]
            output, self._state_h, self._state_c = self._session.run(
                None, {"input": batch, "h": self._state_h, "c": self._state_c}
            )
            self._context = window[-_CONTEXT:]
            probabilities.append(float(output.reshape(-1)[0]))
        return probabilities
