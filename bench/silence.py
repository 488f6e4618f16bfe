"""Choosing the silence window: how often does a window cut a caller off mid-question?

    python bench/silence.py

Speaks multi-clause questions with the bundled Piper voice at three paces, adds the hesitations
callers make ("um", a breath after a comma) as extra silence between clauses, runs the streaming
Silero VAD as the server does, and reports for each candidate window the share of questions that
would have been split in two (a pause inside the question at least as long as the window) and the
latency that window adds to every turn.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asr.vad import WINDOW_MS, VadModel  # noqa: E402
from tts.piper import Synthesizer  # noqa: E402
from tts.settings import TtsSettings
from voice.channels.codecs import int16_to_float, resample  # noqa: E402

CLAUSES = [
    ["Hello", "I bought a smart bulb last week", "and since yesterday it keeps flashing red"],
    ["I want to return the door lock", "it is still in the box", "how do I do that"],
    ["My order number is in the email", "but the package has not arrived", "where is it"],
    ["The thermostat shows an error", "I already restarted it", "what else can I try"],
    ["Can I trade in my old camera", "and if so", "how much time does it take"],
    ["So the hub is connected", "but the plug is not showing up in the app", "why is that"],
]
HESITATIONS_MS = [0, 150, 300, 450]
"""Extra silence a caller adds between clauses (a breath, a short "um" left out)."""
PACES = [0.9, 1.0, 1.2]
CANDIDATES_MS = [300, 400, 500, 600, 700, 800, 1000]


def longest_inner_pause(probabilities: list[float], threshold: float = 0.5) -> int:
    """Longest run of non-speech windows between the first and last speech window, in ms."""
    voiced = [p >= threshold - 0.15 for p in probabilities]
    if True not in voiced:
        return 0
    first, last = voiced.index(True), len(voiced) - 1 - voiced[::-1].index(True)
    longest = run = 0
    for is_voiced in voiced[first : last + 1]:
        run = 0 if is_voiced else run + 1
        longest = max(longest, run)
    return longest * WINDOW_MS


def main() -> None:
    vad = VadModel()
    pauses: list[int] = []
    for pace in PACES:
        voice = Synthesizer(TtsSettings(length_scale=pace))
        for clauses in CLAUSES:
            spoken = [
                resample(int16_to_float(voice.synthesize_blocking(c)), voice.sample_rate, 16000)
                for c in clauses
            ]
            for hesitation in HESITATIONS_MS:
                gap = np.zeros(16 * hesitation, np.float32)
                parts: list[np.ndarray] = []
                for clause in spoken:
                    parts += [clause.astype(np.float32), gap]
                probabilities = vad.stream().process(np.concatenate(parts))
                pauses.append(longest_inner_pause(probabilities))
    print(
        f"{len(pauses)} questions; inner pauses ms: p50 {np.percentile(pauses, 50):.0f}, "
        f"p90 {np.percentile(pauses, 90):.0f}, max {max(pauses)}"
    )
    print("| silence window | questions cut off | added to every turn |")
    print("|---|---|---|")
    for window in CANDIDATES_MS:
        cut = sum(pause >= window for pause in pauses) / len(pauses)
        print(f"| {window} ms | {cut:.0%} | {window} ms |")


if __name__ == "__main__":
    main()
