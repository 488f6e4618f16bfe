"""The ``extractive`` backend: answers with the KB's own sentences, no language model.

It reads out the best passage, shaped for the ear: for a problem ("my bulb is flashing red",
"how do I ...") the passage's opening sentence and its numbered steps as "First, ... Then, ...
Finally, ..."; for anything else the sentences that share the most terms with the question, in
the passage's order, at most ``AgentSettings.max_sentences``. The first sentence can cite the
source ("According to our troubleshooting manual, section 4.2, ...").
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator

from agent.backend import BackendRequest
from agent.kb import KnowledgeBase, Passage
from agent.normalize import terms
from agent.speech import Block, blocks, lower_first, spoken_steps
from agent.types import AgentSettings, AnswerEnd, AnswerEvent, AnswerText
from agent.vocabulary import proper_nouns

# Questions about what something means or why, rather than what to do.
_ASKS_MEANING = re.compile(r"\b(mean|means|meaning|why|what is|whats|what are)\b", re.IGNORECASE)
# Titles that read naturally after "According to our ...".
_DOCUMENT_NOUN = re.compile(
    r"\b(manual|policy|guide|handbook|faq|terms|conditions|documentation)$", re.IGNORECASE
)


class ExtractiveBackend:
    """Stateless apart from a cache of the KB's names; safe to share across calls."""

    name = "extractive"

    def __init__(self, settings: AgentSettings) -> None:
        self._settings = settings
        self._names: tuple[KnowledgeBase, frozenset[str]] | None = None

    async def answer(self, request: BackendRequest) -> AsyncGenerator[AnswerEvent, None]:
        """Yield the answer one sentence per ``AnswerText``, then its ``AnswerEnd``."""
        sentences = self.compose(request)
        for index, sentence in enumerate(sentences):
            yield AnswerText(sentence if index == 0 else " " + sentence)
        yield AnswerEnd(sources=(request.passages[0].id,), backend=self.name)

    def compose(self, request: BackendRequest) -> list[str]:
        """The answer's sentences, from the best passage (pure; used by :meth:`answer`)."""
        passage = request.passages[0]
        names = self._proper_nouns(request.kb)
        parts = blocks(passage.text)
        steps = [b.text for b in parts if b.kind == "step"]
        if steps and not (_ASKS_MEANING.search(request.question) and _has_sentences(parts)):
            return self._procedure(passage, parts, names)
        topic = set(terms(f"{passage.title} {passage.heading}"))
        asked = tuple(t for t in request.search.terms if t not in topic)
        chosen = _relevant(parts, asked, self._settings.max_sentences)
        return self._cite(passage, chosen, names)

    def _procedure(self, passage: Passage, parts: list[Block], names: frozenset[str]) -> list[str]:
        """The opening sentence (if it comes before the steps) and the steps, spoken."""
        lead = [parts[0].text] if parts[0].kind == "sentence" else []
        steps = [b.text for b in parts if b.kind == "step"]
        limit = self._settings.max_steps
        spoken = spoken_steps(steps[:limit], names)
        source = _where(passage, names)
        if len(steps) > limit:
            spoken[-1] = spoken[-1].replace("Finally, ", "Then, ", 1)
            spoken.append(f"The remaining steps are in {source or 'our help pages'}.")
        if lead:
            return self._cite(passage, lead, names) + spoken
        if self._settings.cite_sources and source:
            return [f"Here are the steps from {source}.", *spoken]
        return spoken

    def _cite(self, passage: Passage, sentences: list[str], names: frozenset[str]) -> list[str]:
        source = _where(passage, names)
        if not (self._settings.cite_sources and sentences and source):
            return sentences
        return [f"According to {source}, {lower_first(sentences[0], names)}", *sentences[1:]]

    def _proper_nouns(self, kb: KnowledgeBase) -> frozenset[str]:
        cached = self._names
        if cached is None or cached[0] is not kb:
            cached = (kb, proper_nouns(kb))
            self._names = cached  # one assignment: safe if two calls race on a new KB
        return cached[1]


def _has_sentences(parts: list[Block]) -> bool:
    return any(b.kind == "sentence" for b in parts)


def _relevant(parts: list[Block], query: tuple[str, ...], limit: int) -> list[str]:
    """Up to ``limit`` sentences, the ones sharing most terms with the query, in text order.

    Earlier sentences win ties: manuals state the rule first. ``query`` leaves out the terms
    of the passage's heading, which every sentence is about.
    """
    sentences = [b.text for b in parts if b.kind == "sentence"] or [b.text for b in parts]
    if len(sentences) <= limit:
        return sentences
    wanted = set(query)

    def overlap(index: int) -> tuple[int, int]:
        return len(wanted.intersection(terms(sentences[index]))), -index

    best = sorted(range(len(sentences)), key=overlap, reverse=True)[:limit]
    return [sentences[i] for i in sorted(best)]


def _where(passage: Passage, names: frozenset[str]) -> str | None:
    """ "our troubleshooting manual, section 4.2", or None when the title is no document name
    ("Orders and Delivery") and would sound odd after "according to"."""
    if _DOCUMENT_NOUN.search(passage.title) is None:
        return None
    title = " ".join(w if w in names or w.isupper() else w.lower() for w in passage.title.split())
    section = f", section {passage.number}" if passage.number else ""
    return f"our {title}{section}"
