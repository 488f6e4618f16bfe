"""Speech already made, to be said again at once: the first clauses of replies.

A caller waits for a reply's first clause to be synthesized (0.1–0.2 s of Piper on this
machine's cores, more under load). A hotline says the same things again and again — its
handoff and "say that another way" messages, the answers to its common questions — so the
audio of each first clause is kept, the most recently said first, within a byte budget.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class SpeechCache:
    """Clause text (as spoken, after `tts.normalize.normalize_for_speech`) -> its audio, in
    the voice's format. Used from the event loop only; shared by every call of a server."""

    def __init__(self, max_bytes: int) -> None:
        """`max_bytes` 0 keeps nothing."""
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._audio: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, text: str) -> np.ndarray | None:
        audio = self._audio.get(text)
        if audio is None:
            self.misses += 1
            return None
        self.hits += 1
        self._audio.move_to_end(text)
        return audio

    def put(self, text: str, audio: np.ndarray) -> None:
        """Keep `audio` (read-only from here on: every call shares it), forgetting the clauses
        said longest ago to stay within `max_bytes`."""
        if audio.nbytes > self.max_bytes:
            return
        old = self._audio.pop(text, None)
        if old is not None:
            self.bytes -= old.nbytes
        audio = audio.copy()
        audio.flags.writeable = False
        self._audio[text] = audio
        self.bytes += audio.nbytes
        while self.bytes > self.max_bytes:
            _, dropped = self._audio.popitem(last=False)
            self.bytes -= dropped.nbytes

    def __contains__(self, text: object) -> bool:
        return text in self._audio

    def __len__(self) -> int:
        return len(self._audio)
