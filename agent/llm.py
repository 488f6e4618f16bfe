"""What an LLM backend is asked, and how its streamed reply becomes speakable sentences.

Pure: no I/O, no clock. `chat_messages` builds the conversation (the guardrail prompt
with the passages and their ids, the call's memory, the question); `ReplyFilter` takes
the model's text as it streams and hands out finished sentences with the citations, the
`HANDOFF` marker and Markdown removed, collecting the cited ids and the handoff on the way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agent.kb import Passage
from agent.speech import SENTENCE_END
from agent.types import Exchange
from text.markdown import LINE_MARKER, only_markers, strip_inline

HANDOFF_MARKER = "HANDOFF"
"""What `prompts/guardrail.md` tells the model to reply when the passages do not answer."""

CHARS_PER_TOKEN = 3.0
"""A deliberately low estimate for English (about 4 in practice), so the prompt fits."""

_RESERVED_TOKENS = 64
"""Chat-template tokens around the messages."""

# A sentence ends at . ! ? and whitespace, or at a line break (list items, headings).
_BOUNDARY = re.compile(f"{SENTENCE_END.pattern}|[ \t]*\n\\s*")
_BRACKETS = re.compile(r"[ \t]*\[([^\[\]\n]*)\]|[ \t]*\[[^\]\n]*$")
_ID = re.compile(r"(?<![\w#])[a-z0-9][\w.-]*#[\w.-]*[\w]")
_MARKER = re.compile(rf"\b{HANDOFF_MARKER}\b[.!]?")
_EMPHASIS = re.compile(r"\*\*|__|[*`]")
"""Emphasis and code marks, paired or not: a sentence may end between a pair's two marks."""
_SOURCE_WORDS = re.compile(
    r"\(\s*(?:(?:sources?|references?|see)\s*:?)?[\s,;]*\)|"
    r"[,;]?\s*\b(?:sources?|references?)\s*:[\s,;]*(?=[.!?]?$)",
    re.IGNORECASE,
)
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:!?])")


def system_prompt(guardrail: str, passages: Sequence[Passage], budget_chars: int) -> str:
    """The guardrail prompt followed by the passages, best first, each under its id.

    Args:
        guardrail: the text of `prompts/guardrail.md`.
        passages: retrieval's confident passages, best first.
        budget_chars: room for the passages; the first passage is always included (cut to
            fit), later ones only while they fit whole.
    """
    blocks: list[str] = []
    room = budget_chars
    for index, passage in enumerate(passages):
        block = _passage_block(passage)
        if len(block) > room:
            if index == 0:
                blocks.append(_cut(block, max(room, 200)))
            break
        blocks.append(block)
        room -= len(block) + 2
    return guardrail.rstrip() + "\n\nPassages:\n\n" + "\n\n".join(blocks)


def prompt_ids(prompt: str, passages: Sequence[Passage]) -> tuple[str, ...]:
    """The ids of the passages that made it into `prompt`, best first."""
    return tuple(p.id for p in passages if f"\n[{p.id}] " in prompt)


def passage_budget(
    num_ctx: int, num_predict: int, guardrail: str, memory: Sequence[Exchange], question: str
) -> int:
    """Characters left for passages once the prompt, memory, question and answer fit in the
    model's context window of `num_ctx` tokens (at least 600: one passage always goes in)."""
    used = len(guardrail) + len(question) + sum(len(e.question) + len(e.answer) for e in memory)
    free_tokens = num_ctx - max(num_predict, 0) - _RESERVED_TOKENS - used / CHARS_PER_TOKEN
    return max(600, int(free_tokens * CHARS_PER_TOKEN))


def chat_messages(system: str, memory: Sequence[Exchange], question: str) -> list[dict[str, str]]:
    """The conversation for `/api/chat`: system, then each earlier exchange as a user and
    an assistant message (an interrupted, unheard answer is left out), then the question."""
    messages = [{"role": "system", "content": system}]
    for exchange in memory:
        messages.append({"role": "user", "content": exchange.question})
        if exchange.answer.strip():
            messages.append({"role": "assistant", "content": exchange.answer})
    messages.append({"role": "user", "content": question})
    return messages


def _passage_block(passage: Passage) -> str:
    section = f", section {passage.number}" if passage.number else ""
    return f"[{passage.id}] {passage.title}{section}: {passage.heading}\n{passage.text.strip()}"


def _cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters at a line or sentence end where there is one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind("\n"), head.rfind(". "))
    return head[: end + 1] if end > limit // 2 else head


class ReplyFilter:
    """The model's streamed text in, speakable sentences out. One per answer; not shared.

    A sentence is handed out once a boundary follows it, so a sentence never changes after it
    was spoken; the unfinished rest comes from `finish`. Citations (`[faq#returns]`,
    bare ids), the `HANDOFF` marker, Markdown marks, list bullets and numbers, and leftover
    "Sources:" words are removed; what is left without a letter or digit is dropped.
    """

    def __init__(self) -> None:
        self._raw = ""
        self._done_parts = 0
        self.cited: list[str] = []
        """Ids the model cited so far, in order, without repeats (not checked against the KB)."""
        self.handoff = False
        """True once the model wrote the `HANDOFF` marker."""

    def feed(self, piece: str) -> list[str]:
        """Add a piece of the reply; returns the sentences it finished, cleaned."""
        self._raw += piece
        parts = _BOUNDARY.split(self._raw)
        finished = parts[self._done_parts : len(parts) - 1]
        self._done_parts = len(parts) - 1
        return [s for s in map(self._clean, finished) if s]

    def finish(self, complete: bool = True) -> list[str]:
        """The unfinished last sentence, cleaned (ended with a period if it lacks one), or
        nothing when `complete` is False (the model was cut off mid-sentence)."""
        parts = _BOUNDARY.split(self._raw)
        rest = parts[self._done_parts :]
        self._done_parts = len(parts)
        if not complete:
            return []
        return [s for s in map(self._clean, rest) if s]

    def _clean(self, sentence: str) -> str:
        sentence = strip_inline(sentence)  # a link keeps its words, not its address
        for match in _BRACKETS.finditer(sentence):
            self._cite(_ID.findall(match.group(0)))
        text = _BRACKETS.sub("", sentence)
        self._cite(_ID.findall(text))
        text = _ID.sub("", text)
        if _MARKER.search(text):
            self.handoff = True
            text = _MARKER.sub("", text)
        text = _EMPHASIS.sub("", text).strip()
        text = "" if only_markers(text) else LINE_MARKER.sub("", text)
        text = _SOURCE_WORDS.sub("", text)
        text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(text.split()))
        if not any(c.isalnum() for c in text):
            return ""
        if re.fullmatch(r"(?i)(sources?|references?)\W*", text):
            return ""
        return text if text[-1] in ".!?" else text.rstrip(",;:") + "."

    def _cite(self, ids: list[str]) -> None:
        for found in ids:
            found = found.rstrip(".")
            if found not in self.cited:
                self.cited.append(found)
