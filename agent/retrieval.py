"""Lexical retrieval over a KB: BM25 on normalized terms, tolerant of speech-recognition errors.

Each passage is one document (title + heading twice + text); each FAQ question is one
document (the question twice + the entry's answer), so an FAQ entry is found by whichever of its
questions matches best. Questions and KB go through the same :func:`agent.normalize.terms`; a
question term the KB has never seen is then corrected to a KB term one edit away (two for long
words) — "thermastat" -> "thermostat" — using a SymSpell-style table of single deletions,
so the cost does not grow with the size of the vocabulary.

BM25 ranks; it does not say whether the best hit answers the question. That is
:attr:`Hit.confidence`, a number in 0..1 that the agent compares with its thresholds.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import bm25s
import numpy as np

from agent.kb import KnowledgeBase
from agent.normalize import terms

# bm25s sets its own logger to DEBUG when imported, which would print every index build.
logging.getLogger("bm25s").setLevel(logging.WARNING)

HitKind = Literal["passage", "faq"]

SERVICE_INTENTS = frozenset(
    terms(
        "return refund exchange warranty ship delivery track cancel trade pickup repair "
        "broken faulty"
    )
)
"""What a caller wants done, as opposed to what it is about: in "can I return the smart plug" the
rare product word would otherwise outweigh "return" and find the plug's troubleshooting page."""
INTENT_WEIGHT = 3
"""How many times a service-intent term counts, in ranking and in confidence."""


@dataclass(frozen=True)
class Hit:
    """One KB entry that matches a question."""

    id: str
    kind: HitKind
    score: float
    """BM25 score: only comparable between hits of the same search."""
    confidence: float
    """0..1. Passages: the share of the question's terms (weighted by rarity, idf) that the
    passage contains. FAQ entries: the weighted overlap (Dice) between the question's terms and
    those of the entry's best-matching question, so an FAQ answer needs the question to match
    both ways, not just to be contained in it."""


@dataclass(frozen=True)
class Search:
    """The result of one question."""

    question: str
    terms: tuple[str, ...]
    """The question's index terms after normalization and spelling correction."""
    hits: tuple[Hit, ...]
    """Best first (by BM25 score), one per entry id."""

    def best(self, kind: HitKind) -> Hit | None:
        """The highest-ranked hit of this kind."""
        return next((h for h in self.hits if h.kind == kind), None)

    @property
    def confidence(self) -> float:
        """The best confidence among the hits; 0 when nothing matched."""
        return max((h.confidence for h in self.hits), default=0.0)


@dataclass(frozen=True)
class _Doc:
    id: str
    kind: HitKind
    match_terms: frozenset[str]
    """Passage: all its terms. FAQ: the terms of this one question."""


class Retriever:
    """A BM25 index of one KB. Immutable after construction: share it across calls/threads.

    Building costs about a millisecond per passage; a search is well under 10 ms for a
    1,000-passage KB (see ``bench/retrieval.py``), so it runs on the event loop.
    """

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        corpus: list[list[str]] = []
        self._docs: list[_Doc] = []
        for p in kb.passages:
            heading = terms(p.heading)
            tokens = terms(p.title) + heading + heading + terms(p.text)
            corpus.append(tokens)
            self._docs.append(_Doc(p.id, "passage", frozenset(tokens)))
        for f in kb.faqs:
            answer = terms(f.answer)
            for question in f.questions:
                asked = terms(question)
                corpus.append(asked + asked + answer)
                self._docs.append(_Doc(f.id, "faq", frozenset(asked)))
        self._bm25 = bm25s.BM25()
        self._bm25.index(corpus, show_progress=False)
        df = Counter(t for tokens in corpus for t in set(tokens))
        n = len(corpus)
        self._idf = {t: _idf(n, count) for t, count in df.items()}
        self._unseen_idf = _idf(n, 1)  # as rare as the rarest KB term, even in a tiny KB
        self._df = df
        self._deletions = _deletion_table(df)

    @property
    def vocabulary(self) -> frozenset[str]:
        """Every index term of the KB."""
        return frozenset(self._df)

    def idf(self, term: str) -> float:
        """How rare a term is in the KB; terms the KB lacks count as the rarest."""
        return self._idf.get(term, self._unseen_idf)

    def analyze(self, question: str) -> tuple[str, ...]:
        """The question's distinct terms, with unknown words corrected to KB terms."""
        out: dict[str, None] = {}
        for term in terms(question):
            out[self._correct(term)] = None
        return tuple(out)

    def search(self, question: str, k: int = 5) -> Search:
        """The ``k`` best entries for the question, best first."""
        query = self.analyze(question)
        known = [t for t in query if t in self._df]
        if not known:
            return Search(question, query, ())
        weighted = known + [t for t in known if t in SERVICE_INTENTS] * (INTENT_WEIGHT - 1)
        scores = self._bm25.get_scores(weighted)
        hits: dict[str, Hit] = {}
        for index in np.argsort(-scores, kind="stable"):
            score = float(scores[index])
            if score <= 0.0 or len(hits) >= k:
                break
            doc = self._docs[index]
            if doc.id not in hits:
                hits[doc.id] = Hit(doc.id, doc.kind, score, self._confidence(query, doc))
            elif doc.kind == "faq":  # another question of an entry already found
                better = self._confidence(query, doc)
                if better > hits[doc.id].confidence:
                    hits[doc.id] = Hit(doc.id, doc.kind, hits[doc.id].score, better)
        return Search(question, query, tuple(hits.values()))

    def _confidence(self, query: Iterable[str], doc: _Doc) -> float:
        asked = {t: self._weight(t) for t in query}
        total = sum(asked.values())
        shared = sum(w for t, w in asked.items() if t in doc.match_terms)
        if doc.kind == "passage":
            return shared / total if total else 0.0
        both = total + sum(self._weight(t) for t in doc.match_terms)
        return 2 * shared / both if both else 0.0

    def _weight(self, term: str) -> float:
        return self.idf(term) * (INTENT_WEIGHT if term in SERVICE_INTENTS else 1)

    def _correct(self, term: str) -> str:
        """The KB term closest to an unknown ``term``, or ``term`` itself."""
        if term in self._df or not term.isalpha() or len(term) < 5:
            return term
        limit = 1 if len(term) < 8 else 2
        variants = _deletions(term) | (
            {d for v in _deletions(term) for d in _deletions(v)} if limit == 2 else set()
        )
        candidates = {c for v in variants | {term} for c in self._deletions.get(v, ())}
        scored = [(edit_distance(term, c), -self._df[c], c) for c in candidates]
        best = min((s for s in scored if s[0] <= limit), default=None)
        return best[2] if best else term


def _idf(n_docs: int, df: int) -> float:
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _deletion_table(vocabulary: Iterable[str]) -> dict[str, set[str]]:
    """Every KB term and every single-character deletion of it -> the KB terms it came from."""
    table: defaultdict[str, set[str]] = defaultdict(set)
    for word in vocabulary:
        if word.isalpha() and len(word) >= 4:
            table[word].add(word)
            for variant in _deletions(word):
                table[variant].add(word)
    return dict(table)


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, swaps."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]
