"""Streamed answer text cut into clauses, so speech can start before the answer is written.

A clause ends at a sentence end (". ", "! ", "? "), at a newline, at a soft mark ("," ";" ":"
a spaced dash, an ellipsis) once the clause is long enough, or, failing all of those, at the
last space before `max_chars`. The first clause of an answer may end at a soft mark sooner, so
the caller hears something early; and with `first_max_chars` a long first sentence is cut in
two, at a comma just past that length or before a word that begins a phrase ("The charge is
$5 | per month regardless of usage."):
the caller waits for the synthesis of the first clause only, and a short clause is made
several times faster than a long one. Each later clause is cut the same way at twice the length
the clause before it could have (60, 120, 240 characters after a first of 30): it is made while
the audio before it plays, and that audio is about as long as it is. With `first_least_chars`
a first sentence too short to be said alone ("Yes.") goes with what follows: the clause after
it would have little time to be made in.

Clauses never depend on how the text was chunked: a break is only taken once the text after it
settles the question ("Dr. Smith" is no sentence end, "4:30 p.m. Then" is), so `feed` may hold
a clause back until the next delta shows a character or two more. Breaks fall only where the
text has whitespace (or ends), and clauses come back with their whitespace collapsed: joined
with single spaces, they give the text with its whitespace collapsed.
"""

from __future__ import annotations

import re

from text.words import BEFORE_NUMBER, END_IF_CAPITAL, LEANS_ON_NEXT, NEVER_END, PHRASE_STARTS

_SENTENCE_MARKS = ".!?…"
_CLOSERS = "\"')]}”’»"
_SOFT_MARKS = ",;:–—"
_LIST_MARKER = re.compile(r"[0-9]{1,3}\.")
_WAIT, _NO = -1, 0
"""`_decide` verdicts besides a break position: need more text; not a break."""
_ENDS_SOON = (
    re.compile(rf"[{re.escape(_SENTENCE_MARKS)}][{re.escape(_CLOSERS)}]*(\s|$)|\n"),
    re.compile(rf"[{re.escape(_SOFT_MARKS)}](\s|$)"),
)
"""A sentence's end, and a soft mark: either just past a first clause's cut ends it there."""
CUT_REST_CHARS = 20
"""A sentence is not cut when it ends within this many characters of the cut: the second part
would be a word or two, said on its own."""


class ClauseSplitter:
    """Cuts one answer's text deltas into speakable clauses.

    Args:
        min_chars: a clause may end at a soft mark once it has this many characters;
            None: only at sentence ends, newlines and `max_chars`.
        first_min_chars: the same for the answer's first clause (smaller, to speak early).
        max_chars: a clause longer than this ends at its last space before it (a single
            longer word is kept whole); None: no limit.
        first_max_chars: the answer's first clause is cut at about this length, before a word
            that begins a phrase if there is one, else at its last space; not when its
            sentence ends, or a soft mark comes, within `CUT_REST_CHARS` more (the clause
            ends there). Each later clause is cut so at twice the length of the one before
            it, while that is under `max_chars`. A cut clause holds at least half its cut's
            length. None: no clause is cut so.
        first_least_chars: the answer's first clause holds at least this many characters: a
            shorter first sentence ("Yes.") is said with what follows, and a cut leaves no
            less. None: no least.

    One splitter per answer; `flush` ends the answer and readies it for the next one. Not
    thread-safe.
    """

    def __init__(
        self,
        *,
        min_chars: int | None = 40,
        first_min_chars: int | None = 20,
        max_chars: int | None = 250,
        first_max_chars: int | None = None,
        first_least_chars: int | None = None,
    ) -> None:
        self.min_chars = min_chars
        self.first_min_chars = first_min_chars
        self.max_chars = max_chars
        self.first_max_chars = first_max_chars
        self.first_least_chars = first_least_chars
        self._buffer = ""
        self._emitted = 0

    def feed(self, delta: str) -> list[str]:
        """The clauses that `delta` completes (often none)."""
        self._buffer += delta
        return self._take(final=False)

    def feed_written(self, text: str) -> list[str]:
        """The clauses a piece of the answer, as its writer gave it, completes: a piece that
        ends in a sentence's end ends its clause now (the writer ended the sentence), unless
        it would be a first clause under `first_least_chars`."""
        ready = self.feed(text)
        ended = text.rstrip().endswith((".", "!", "?"))
        if ended and not self._too_short(len(self._buffer.strip())):
            ready += self._rest()
        return ready

    def flush(self) -> list[str]:
        """The answer's remaining clauses; the splitter is then ready for a new answer."""
        clauses = self._rest()
        self._emitted = 0
        return clauses

    def _rest(self) -> list[str]:
        """Every clause of the text so far, the last one ended where the text ends."""
        clauses = self._take(final=True)
        rest = " ".join(self._buffer.split())
        if rest:
            clauses.append(rest)
            self._emitted += 1
        self._buffer = ""
        return clauses

    def _take(self, final: bool) -> list[str]:
        clauses = []
        while (end := self._next_break(final)) > 0:
            clause = " ".join(self._buffer[:end].split())
            self._buffer = self._buffer[end:]
            if clause:
                clauses.append(clause)
                self._emitted += 1
        return clauses

    def _next_break(self, final: bool) -> int:
        """Where the first clause in the buffer ends, or `_WAIT`/`_NO` (nothing to emit yet)."""
        buffer = self._buffer
        start = len(buffer) - len(buffer.lstrip())
        limit = start + self.max_chars if self.max_chars is not None else len(buffer)
        cut_chars = self._cut_chars()
        early = start + cut_chars if cut_chars is not None else None
        i = start
        while i < len(buffer):
            if early is not None and i >= early:
                verdict = self._early_cut(start, early, final)
                if verdict != _NO:
                    return verdict
                early = None  # the sentence ends soon, or there is no word to cut at
            if i >= limit:
                return self._cap(start, limit, final)
            verdict, i = self._decide(i, start, final)
            if verdict > 0 and self._too_short(verdict - start):
                continue
            if verdict != _NO:
                return verdict
        return _WAIT

    def _too_short(self, chars: int) -> bool:
        """Whether a clause of `chars` characters would be a first clause under
        `first_least_chars`."""
        least = self.first_least_chars
        return self._emitted == 0 and least is not None and chars < least

    def _cut_chars(self) -> int | None:
        """About where the next clause is cut if nothing ends it sooner (`first_max_chars`,
        doubled for each clause before it), or None."""
        if self.first_max_chars is None:
            return None
        cut = self.first_max_chars * 2**self._emitted
        return cut if self.max_chars is None or cut < self.max_chars else None

    def _early_cut(self, start: int, cut: int, final: bool) -> int:
        """Where a long sentence is cut, reaching `cut` with no break: before the last word
        that begins a phrase, else at the last space after a word that may end a clause,
        leaving at least half the cut's length (and `first_least_chars` in a first clause);
        `_NO` when the sentence ends within `CUT_REST_CHARS` or there is no such place.
        Decided only on text that settles it (a "." at the end of the text so far may be the
        point of "$14.00")."""
        buffer = self._buffer
        for ending in _ENDS_SOON:
            end = ending.search(buffer, cut)
            if end is not None and end.start() <= cut + CUT_REST_CHARS:
                return _WAIT if end.end() == len(buffer) and not final else _NO
        if len(buffer) - cut <= CUT_REST_CHARS:
            return _NO if final else _WAIT
        half = (cut - start) // 2
        spaces = [
            start + m.start()
            for m in re.finditer(r"\s+", buffer[start : cut + 1])
            if m.start() >= half and not self._too_short(m.start())
        ]
        for at in reversed(spaces):
            word = buffer[at:].split(maxsplit=1)[0].strip("\"'([{“‘").lower()
            if word in PHRASE_STARTS:
                return at
        spaces = [at for at in spaces if not _leans_on_next(buffer[:at].rsplit(maxsplit=1)[-1])]
        return spaces[-1] if spaces else _NO

    def _decide(self, i: int, start: int, final: bool) -> tuple[int, int]:
        """(verdict on the character at `i`, where to look next)."""
        buffer, char = self._buffer, self._buffer[i]
        if char == "\n":
            return i + 1, i + 1
        if char in _SENTENCE_MARKS:
            return self._sentence(i, start, final)
        if char in _SOFT_MARKS or (char == "-" and buffer[i - 1 : i].isspace()):
            if i + 1 == len(buffer):
                return (_NO if final else _WAIT), i + 1
            return (self._soft(start, i + 1) if buffer[i + 1].isspace() else _NO), i + 1
        return _NO, i + 1

    def _sentence(self, i: int, start: int, final: bool) -> tuple[int, int]:
        """The verdict on a run of ".!?…" (and closing quotes or brackets) starting at `i`."""
        buffer = self._buffer
        run_end = i
        while run_end < len(buffer) and buffer[run_end] in _SENTENCE_MARKS:
            run_end += 1
        end = run_end
        while end < len(buffer) and buffer[end] in _CLOSERS:
            end += 1
        if end == len(buffer):
            return (end if final else _WAIT), end
        if not buffer[end].isspace():
            return _NO, end  # "2.4", "e.g.,", "brightnest.com"
        run = buffer[i:run_end]
        if "!" in run or "?" in run:
            return end, end
        if "…" in run or ".." in run:
            return self._soft(start, end), end
        return self._period(i, start, end, final), end

    def _soft(self, start: int, end: int) -> int:
        """A break at `end` (after a soft mark) if the clause is long enough."""
        least = self.first_min_chars if self._emitted == 0 else self.min_chars
        return end if least is not None and end - start >= least else _NO

    def _period(self, dot: int, start: int, end: int, final: bool) -> int:
        """Whether the "." at `dot`, followed by whitespace at `end`, ends a sentence."""
        buffer = self._buffer
        word_start = dot
        while word_start > 0 and not buffer[word_start - 1].isspace():
            word_start -= 1
        word = buffer[word_start : dot + 1].lstrip("\"'([{“‘").lower()
        if word in NEVER_END or re.fullmatch(r"[a-z]\.", word):
            return _NO  # "Dr. Smith", "J. Smith"
        if _LIST_MARKER.fullmatch(word) and word_start == start:
            return _NO  # "1. Open the app", "Do this. 2. Close it." (newlines end clauses)
        following = end
        while following < len(buffer) and buffer[following].isspace():
            if buffer[following] == "\n":
                return end
            following += 1
        if following == len(buffer):
            return end if final else _WAIT
        after = buffer[following]
        if after.islower() or (word in END_IF_CAPITAL and not after.isupper()):
            return _NO
        if word in BEFORE_NUMBER and (after.isdigit() or after == "#"):
            return _NO
        return end

    def _cap(self, start: int, limit: int, final: bool) -> int:
        """The break for a clause that reached `max_chars` without one of its own."""
        window = self._buffer[start : limit + 1]
        spaces = [m.start() for m in re.finditer(r"\s", window)]
        if spaces:
            return start + spaces[-1]
        later = re.compile(r"\s").search(self._buffer, limit + 1)
        if later:
            return later.start()
        return _NO if final else _WAIT


def _leans_on_next(word: str) -> bool:
    """Whether a clause may not end with `word` ("the", "with", "Dr.")."""
    word = word.lower()
    return word in NEVER_END or word in LEANS_ON_NEXT or word in PHRASE_STARTS


def split_sentences(text: str) -> list[str]:
    """Whole text cut at sentence ends and newlines only (no length-based breaks)."""
    splitter = ClauseSplitter(min_chars=None, first_min_chars=None, max_chars=None)
    return splitter.feed(text) + splitter.flush()
