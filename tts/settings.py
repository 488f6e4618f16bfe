"""Speech synthesis settings (the `[tts]` section of the server's settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TtsSettings:
    voice: Path | None = None
    """A Piper .onnx voice (its .onnx.json beside it); None is the embedded en_US-joe-medium."""
    length_scale: float = 1.0
    """Speaking pace: above 1 is slower."""
    workers: int = 1
    """Syntheses that run at once."""
    threads: int = 1
    """CPU threads per synthesis. Two make one clause a quarter faster (a 3 s clause: 0.17 s
    instead of 0.23 s) but, on a 2-core server shared with recognition, slow eight callers down
    (end of speech → first audio p95 1.17 s instead of 0.80 s; docs/benchmarks.md)."""
    alone_threads: int = 2
    """CPU threads for a reply's first clause when no other recognition or synthesis is under
    way: the cores are idle then, so the caller hears it sooner (a 2 s clause in 0.1 s instead
    of 0.18 s) at no other call's cost. Not above `threads`: one way always."""
    cache_mb: float = 32.0
    """Memory for the audio of replies' first clauses said before, said again at once (a
    hotline's fixed messages, the answers to its common questions; `tts.cache.SpeechCache`).
    32 MB holds about 500; 0 keeps none."""
