"""Streaming voice-activity detection with the Silero VAD model that faster-whisper ships."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
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
    """The loaded Silero model. One instance serves every call; `stream()` gives per-call state.

    Streams run on the model's own threads, so nothing else a server does off its event loop
    (a store query held up by an outage, a KB reload) can queue ahead of hearing a caller."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_model_path()
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._threads = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="vad")

    def stream(self) -> VadStream:
        return VadStream(self._session, self._threads)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


class VadStream:
    """One call's VAD: feed 16 kHz float32 audio of any length, get one probability per window.

    Not thread-safe: one `process` or `hear` at a time per stream.
    """

    def __init__(
        self, session: onnxruntime.InferenceSession, threads: ThreadPoolExecutor | None = None
    ) -> None:
        self._session = session
        self._threads = threads
        self._state_h = np.zeros((1, 1, 128), dtype=np.float32)
        self._state_c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    async def hear(self, audio: np.ndarray) -> list[float]:
        """`process` off the event loop, on the model's own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, self.process, audio)

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
