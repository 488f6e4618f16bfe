"""Turning written text into sentences that sound right when spoken.

Pure functions plus one small buffer; nothing here knows about the KB or retrieval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from text.markdown import strip_inline
from text.words import NEVER_END

_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_MENU_ARROW = re.compile(r"\s*>\s*")
SENTENCE_END = re.compile(
    r"(?<!\b[A-Za-z]\.)"
    + "".join(rf"(?<!\b(?i:{re.escape(word)}))" for word in sorted(NEVER_END))
    + r"(?<=[.!?])\s+"
)
"""Where a sentence ends: at . ! or ? followed by whitespace, unless the dot belongs to an
initial ("J. Smith") or an abbreviation that never ends one ("e.g.", "Dr."); a number's dot
("2.4") has no space after it anyway."""

_ORDINALS = ("First", "Then", "Next", "After that")


@dataclass(frozen=True)
class Block:
    """One spoken unit of a passage: a sentence, or one numbered step."""

    kind: Literal["sentence", "step"]
    text: str


def plain(text: str) -> str:
    """Markdown inline markup removed (`text.markdown.strip_inline`): links keep their text,
    emphasis and code marks go; and `a > b` menus become `a, then b`."""
    text = strip_inline(text)
    text = _MENU_ARROW.sub(", then ", text)
    return " ".join(text.split())


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences, each ending in punctuation (a trailing colon, as
    before a list, becomes a full stop)."""
    out = []
    for piece in SENTENCE_END.split(" ".join(text.split())):
        piece = piece.strip().rstrip(":;,").rstrip()
        if piece:
            out.append(piece if piece[-1] in ".!?" else piece + ".")
    return out


def blocks(markdown: str) -> list[Block]:
    """A passage body as spoken blocks: numbered list items are steps; bullets, paragraphs and
    `###` headings are sentences. A short bulleted list after a line that ends with a colon
    is read as one sentence: "Report an outage: in the app, by phone, or online."."""
    out: list[Block] = []
    paragraph: list[str] = []
    bullets: list[str] = []
    lead: list[str | None] = [None]
    """The text of the line before the bullets when it ends with a colon."""

    def flush() -> None:
        text = plain(" ".join(paragraph))
        paragraph.clear()
        if not text:
            return
        if text.endswith(":"):
            *before, last = SENTENCE_END.split(text)
            out.extend(Block("sentence", s) for s in split_sentences(" ".join(before)))
            lead[0] = last
            return
        out.extend(Block("sentence", s) for s in split_sentences(text))

    def flush_bullets() -> None:
        items = [b.rstrip(".;, ") for b in bullets]
        bullets.clear()
        if not items:
            return
        head, lead[0] = lead[0], None
        if head is not None and all(len(i.split()) <= LIST_ITEM_WORDS for i in items):
            items = [lower_first(i) for i in items]
            listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
            out.append(Block("sentence", _end_with_period(f"{head} {listed}")))
            return
        if head is not None and len(head.split()) >= 3:  # "Fares:" alone says nothing
            out.extend(Block("sentence", s) for s in split_sentences(head))
        for item in items:
            out.extend(Block("sentence", s) for s in split_sentences(item))

    for line in markdown.splitlines():
        numbered, bullet = _NUMBERED.match(line), _BULLET.match(line)
        if bullet:
            if paragraph:
                flush()
            bullets.append(plain(bullet.group(1)))
            continue
        flush_bullets()
        if lead[0] is not None:  # a colon that no list followed
            out.extend(Block("sentence", s) for s in split_sentences(lead[0]))
            lead[0] = None
        if numbered or not line.strip() or line.lstrip().startswith("#"):
            flush()
            if lead[0] is not None and not numbered:
                out.extend(Block("sentence", s) for s in split_sentences(lead[0]))
                lead[0] = None
        if numbered:
            if lead[0] is not None:
                out.extend(Block("sentence", s) for s in split_sentences(lead[0]))
                lead[0] = None
            out.append(Block("step", _end_with_period(plain(numbered.group(1)))))
        elif line.lstrip().startswith("#"):
            paragraph.append(_end_with_period(line.lstrip("# ").strip()))
            flush()
        elif line.strip():
            paragraph.append(line.strip())
    flush()
    if bullets:
        flush_bullets()
    elif lead[0] is not None:
        out.extend(Block("sentence", s) for s in split_sentences(lead[0]))
    return out


LIST_ITEM_WORDS = 12
"""Bullets longer than this are read as sentences of their own, not as one list."""


def spoken_steps(steps: list[str], keep_capitals: frozenset[str] = frozenset()) -> list[str]:
    """Numbered steps as spoken sentences: "First, ...", "Then, ...", ..., "Finally, ...".

    Args:
        steps: one sentence per step, as written.
        keep_capitals: words whose capital stays after the ordinal (product names).
    """
    if len(steps) == 1:
        return list(steps)
    out = []
    for index, step in enumerate(steps):
        if index == len(steps) - 1:
            ordinal = "Finally"
        else:
            ordinal = _ORDINALS[min(index, len(_ORDINALS) - 1)]
        out.append(f"{ordinal}, {lower_first(step, keep_capitals)}")
    return out


def lower_first(sentence: str, keep_capitals: frozenset[str] = frozenset()) -> str:
    """Lowercase the first letter so the sentence can follow a lead-in, unless the first word
    is a name (in `keep_capitals`), an acronym, or "I"."""
    first = sentence.split(" ", 1)[0].rstrip(",.;:")
    if not first or first in keep_capitals or first == "I" or first[1:] != first[1:].lower():
        return sentence
    return sentence[0].lower() + sentence[1:]


def _end_with_period(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


class SentenceBuffer:
    """Collects streamed text pieces and hands out complete sentences.

    A sentence is complete once punctuation and whitespace follow it, so the last sentence
    comes out of `flush`. One buffer per answer.
    """

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, piece: str) -> list[str]:
        """Add a piece; returns the sentences it completed, in order."""
        self._pending += piece
        parts = SENTENCE_END.split(self._pending)
        self._pending = parts.pop()
        return [p.strip() for p in parts if p.strip()]

    def flush(self) -> str | None:
        """The unfinished rest, if any; the buffer is empty afterwards."""
        rest, self._pending = self._pending.strip(), ""
        return rest or None
