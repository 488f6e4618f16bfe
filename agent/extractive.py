"""The `extractive` backend: answers with the KB's own sentences, no language model.

It reads out the sentences that answer the question, shaped for the ear. Every spoken block of
the top passages (a sentence, or a numbered step) was compared with the question by retrieval
(`Search.blocks`); the passage whose block answers best is read:

- a procedure (the best block is one of its steps, or the sentence that leads into them, and
  the caller does not ask what something means): the lead sentence and the numbered steps, as
  "First, ... Then, ... Finally, ...";
- anything else: the best sentence and those nearly as close, in the passage's order, at most
  `AgentSettings.max_sentences` (the late fee two lines down, not the passage's first line). A
  sentence that leans on the one before it ("It takes two days.") brings that one along. For a
  price question, sentences that state a price come first.

Without embeddings (`embedding_model = ""`) the sentences sharing the most terms with the
question are read instead. `cite_sources` starts the answer with "According to section 4.2
of <title>, ...".
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence

import numpy as np

from agent import guardrails
from agent.backend import BackendRequest
from agent.kb import KnowledgeBase, Passage
from agent.normalize import terms
from agent.speech import Block, blocks, lower_first, spoken_steps
from agent.types import AgentSettings, AnswerEnd, AnswerEvent, AnswerText
from agent.vocabulary import proper_nouns

# Questions about what something means or why, rather than what to do.
_ASKS_MEANING = re.compile(r"\b(mean|means|meaning|why|what is|whats|what are)\b", re.IGNORECASE)
# Questions about how to do something: a passage without numbered steps gives the way first.
_ASKS_HOW = re.compile(
    r"\bhow (do|can|should|would|could) (i|we|you)\b|\bhow to\b|\bwhat (do|should) i do\b",
    re.IGNORECASE,
)
# A sentence that only makes sense after the one before it.
_LEANS_BACK = re.compile(r"^(it|this|that|these|those|they|he|she|its|their|such|there)\b", re.I)

SENTENCE_MARGIN = 0.2
"""A sentence is read with the best one when its similarity is at most this much lower."""
WORD_BONUS = 0.04
"""Added to a sentence's similarity for each of the question's own words it holds."""
SWITCH_MARGIN = 0.03
"""Another top passage is read instead of the best-ranked one when its best block is closer to
the question by more than this."""


class ExtractiveBackend:
    """Stateless apart from a cache of the KB's names; safe to share across calls."""

    name = "extractive"

    def __init__(self, settings: AgentSettings) -> None:
        self._settings = settings
        self._names: tuple[KnowledgeBase, frozenset[str]] | None = None

    async def answer(self, request: BackendRequest) -> AsyncGenerator[AnswerEvent, None]:
        """Yield the answer one sentence per `AnswerText`, then its `AnswerEnd`."""
        passage, sentences = self.compose_with_source(request)
        for index, sentence in enumerate(sentences):
            yield AnswerText(sentence if index == 0 else " " + sentence)
        yield AnswerEnd(sources=(passage.id,), backend=self.name)

    def compose(self, request: BackendRequest) -> list[str]:
        """The answer's sentences (pure; used by `answer`)."""
        return self.compose_with_source(request)[1]

    def compose_with_source(self, request: BackendRequest) -> tuple[Passage, list[str]]:
        """The passage read and the answer's sentences."""
        passage, scores = _reading(request)
        names = self._proper_nouns(request.kb)
        parts = blocks(passage.text)
        steps = [b.text for b in parts if b.kind == "step"]
        meaning = _ASKS_MEANING.search(request.question) and _has_sentences(parts)
        if steps and not meaning and (scores is None or _leads_to_steps(parts, scores)):
            return passage, self._procedure(passage, parts, names)
        price = guardrails.asks_price(request.question)
        topic = set(terms(f"{passage.title} {passage.heading}"))
        asked = tuple(t for t in request.search.terms if t not in topic)
        if scores is None:
            chosen = _relevant(parts, asked, self._settings.max_sentences)
        else:
            how = _ASKS_HOW.search(request.question) is not None
            chosen = _closest(parts, scores, self._settings.max_sentences, price, asked, how)
        return passage, self._cite(passage, chosen, names)

    def _procedure(self, passage: Passage, parts: list[Block], names: frozenset[str]) -> list[str]:
        """The opening sentence (if it comes before the steps) and the steps, spoken."""
        lead = [parts[0].text] if parts[0].kind == "sentence" else []
        steps = [b.text for b in parts if b.kind == "step"]
        limit = self._settings.max_steps
        spoken = spoken_steps(steps[:limit], names)
        source = _where(passage)
        if len(steps) > limit:
            spoken[-1] = spoken[-1].replace("Finally, ", "Then, ", 1)
            spoken.append(f"The remaining steps are in {source}.")
        if lead:
            return self._cite(passage, lead, names) + spoken
        if self._settings.cite_sources:
            return [f"Here are the steps from {source}.", *spoken]
        return spoken

    def _cite(self, passage: Passage, sentences: list[str], names: frozenset[str]) -> list[str]:
        if not (self._settings.cite_sources and sentences):
            return sentences
        source = _where(passage)
        return [f"According to {source}, {lower_first(sentences[0], names)}", *sentences[1:]]

    def _proper_nouns(self, kb: KnowledgeBase) -> frozenset[str]:
        cached = self._names
        if cached is None or cached[0] is not kb:
            cached = (kb, proper_nouns(kb))
            self._names = cached  # one assignment: safe if two calls race on a new KB
        return cached[1]


def _reading(request: BackendRequest) -> tuple[Passage, np.ndarray | None]:
    """The passage to read, with its blocks' similarities to the question (None without
    embeddings): the best-ranked passage, unless another of the top three holds a block
    clearly closer to the question."""
    scored = [
        (p, request.search.blocks[p.id])
        for p in request.passages[:3]
        if p.id in request.search.blocks and len(request.search.blocks[p.id])
    ]
    if not scored or scored[0][0] is not request.passages[0]:
        return request.passages[0], None if not scored else request.search.blocks.get(
            request.passages[0].id
        )
    best, best_scores = scored[0]
    for passage, scores in scored[1:]:
        if float(scores.max()) > float(best_scores.max()) + SWITCH_MARGIN:
            best, best_scores = passage, scores
    return best, best_scores


def _leads_to_steps(parts: list[Block], scores: np.ndarray) -> bool:
    """The block closest to the question is a step, or the sentence that leads into them."""
    best = int(np.argmax(scores))
    if parts[best].kind == "step":
        return True
    first_step = next(i for i, b in enumerate(parts) if b.kind == "step")
    return best < first_step and best == 0


def _closest(
    parts: list[Block],
    scores: np.ndarray,
    limit: int,
    price: bool,
    asked: Sequence[str],
    how: bool = False,
) -> list[str]:
    """The sentence closest to the question and those within SENTENCE_MARGIN of it, in the
    passage's order, at most `limit`; a passage of at most `limit` sentences is read whole.
    A sentence holding more of the question's own words (`asked`, the heading's left out)
    counts as a little closer. For a "how do I" question (`how`) the passage's first
    sentences fill the rest: manuals give the usual way first."""
    indices = [i for i, b in enumerate(parts) if b.kind == "sentence"] or list(range(len(parts)))
    if price:
        priced = [i for i in indices if guardrails.states_price(parts[i].text)]
        indices = priced or indices
    if len(indices) <= limit and not price:
        return [parts[i].text for i in indices]
    wanted = set(asked)
    boosted = {
        i: float(scores[i]) + WORD_BONUS * len(wanted.intersection(terms(parts[i].text)))
        for i in indices
    }
    scores = np.array([boosted.get(i, -1.0) for i in range(len(parts))])
    ranked = sorted(indices, key=lambda i: -float(scores[i]))
    top = float(scores[ranked[0]])
    chosen = [i for i in ranked[:limit] if float(scores[i]) >= top - SENTENCE_MARGIN]
    if how:
        chosen = [ranked[0], *[i for i in indices if i != ranked[0]][: limit - 1]]
    first = min(chosen)
    if _LEANS_BACK.match(parts[first].text) and first > 0 and len(chosen) < limit + 1:
        chosen.append(first - 1)
    return [parts[i].text for i in sorted(set(chosen))][: limit + 1]


def _has_sentences(parts: list[Block]) -> bool:
    return any(b.kind == "sentence" for b in parts)


def _relevant(parts: list[Block], query: Sequence[str], limit: int) -> list[str]:
    """Up to `limit` sentences, the ones sharing most terms with the query, in text order.

    Earlier sentences win ties: manuals state the rule first. `query` leaves out the terms
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


def _where(passage: Passage) -> str:
    """ "section 4.2 of the Troubleshooting Manual", or "the Orders and Delivery Guide"."""
    if passage.number:
        return f"section {passage.number} of the {passage.title}"
    return f"the {passage.title}"
