"""Word error rate: a transcript against a reference, word by word, after normalization.

Both sides are normalized the same way before they are compared: numbers and symbols are
written out as the TTS normalizer says them ("7" → "seven", "2.4 GHz" → "two point four
gigahertz"), then case, punctuation, hyphens and apostrophes are dropped ("Wi-Fi" → "wi fi",
"won't" → "wont": `text.words.plain_words`). So "seven days" and "7 days" are the same words;
a recognizer is not blamed for writing a number one way and the reference the other. Pure and
thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from text.words import plain_words
from tts.normalize import normalize_for_speech

Op = Literal["ok", "sub", "ins", "del"]


def normalize_words(text: str) -> list[str]:
    """The words of `text` as compared for WER: "It's 2.4 GHz!" → ["its", "two", "point",
    "four", "gigahertz"]."""
    return plain_words(normalize_for_speech(text))


@dataclass(frozen=True)
class Edit:
    """One step of the alignment of a transcript against its reference."""

    op: Op
    """"ok" (the words match), "sub" (a word heard wrong), "ins" (a word heard that was not
    said), "del" (a word said that was not heard)."""
    ref: str | None
    """The reference word; None for an insertion."""
    hyp: str | None
    """The transcript's word; None for a deletion."""


@dataclass(frozen=True)
class Alignment:
    """A transcript aligned word by word against its reference."""

    edits: tuple[Edit, ...]

    @property
    def reference_words(self) -> int:
        return sum(edit.op != "ins" for edit in self.edits)

    @property
    def errors(self) -> int:
        """Substitutions + insertions + deletions."""
        return sum(edit.op != "ok" for edit in self.edits)

    @property
    def wer(self) -> float:
        """errors / reference words; 0.0 for an empty reference heard as nothing, 1.0 per word
        heard over an empty reference."""
        if self.reference_words == 0:
            return float(self.errors)
        return self.errors / self.reference_words


def align(reference: str, transcript: str) -> Alignment:
    """The least-cost word alignment (Levenshtein, unit costs) of `transcript` against
    `reference`, both normalized by `normalize_words`."""
    return align_words(normalize_words(reference), normalize_words(transcript))


def align_words(ref: list[str], hyp: list[str]) -> Alignment:
    """The least-cost alignment of two word lists. Ties prefer a match or substitution over
    an insertion, an insertion over a deletion."""
    rows, cols = len(ref) + 1, len(hyp) + 1
    cost = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i
    for j in range(cols):
        cost[0][j] = j
    for i in range(1, rows):
        for j in range(1, cols):
            diagonal = cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1])
            cost[i][j] = min(diagonal, cost[i][j - 1] + 1, cost[i - 1][j] + 1)
    edits: list[Edit] = []
    i, j = len(ref), len(hyp)
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            op: Op = "ok" if ref[i - 1] == hyp[j - 1] else "sub"
            edits.append(Edit(op, ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif j and cost[i][j] == cost[i][j - 1] + 1:
            edits.append(Edit("ins", None, hyp[j - 1]))
            j -= 1
        else:
            edits.append(Edit("del", ref[i - 1], None))
            i -= 1
    return Alignment(tuple(reversed(edits)))


def pooled_wer(alignments: list[Alignment]) -> float | None:
    """Corpus WER: all errors over all reference words (long questions weigh more than short
    ones); None when there is nothing to score."""
    words = sum(alignment.reference_words for alignment in alignments)
    if not alignments:
        return None
    errors = sum(alignment.errors for alignment in alignments)
    return errors / words if words else float(errors > 0)
