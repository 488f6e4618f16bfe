"""Retrieval over a KB: sentence embeddings for meaning, BM25 for names, fused.

Two rankings of the same entries (passages and FAQ entries):

- **semantic**: the question's embedding against every passage (its heading and text), every
  spoken block of it (a sentence or a numbered step, prefixed with the heading), and every FAQ
  question. An entry scores its best unit. This finds "Do I get anything back if the power was
  off?" under "Compensation for supply interruptions";
- **lexical**: BM25 over normalized terms (the KB's `vocabulary.yaml` replacements applied),
  with unknown words corrected to KB terms one or two edits away ("refnud" -> "refund",
  a SymSpell-style table of deletions). It catches what embeddings blur: product names, model
  numbers, error codes.

The two are fused by score: the cosine similarity plus `LEXICAL_WEIGHT` times the BM25 score
relative to the best one (measured on five KBs against rank fusion and against either alone:
docs/benchmarks.md). The semantic similarity of each hit is kept, because it is the number the
agent compares with its thresholds (0..1, the same scale on every KB). Without an embedder
(`AgentSettings.embedding_model = ""`) only BM25 ranks, and `Hit.similarity` is the
lexical coverage instead.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import bm25s
import numpy as np

from agent.embedder import Embedder
from agent.embeddings import EmbeddingCache, Unit, units_of
from agent.kb import KnowledgeBase
from agent.normalize import Normalizer

# bm25s sets its own logger to DEBUG when imported, which would print every index build.
logging.getLogger("bm25s").setLevel(logging.WARNING)

HitKind = Literal["passage", "faq"]

LEXICAL_WEIGHT = 0.1
"""What the best BM25 score adds to a cosine similarity in the fused ranking."""


@dataclass(frozen=True)
class Hit:
    """One KB entry that matches a question."""

    id: str
    kind: HitKind
    score: float
    """Fused score: only comparable between hits of the same search."""
    similarity: float
    """0..1: cosine similarity of the question to the entry's best unit (its text, heading, a
    sentence or step, an FAQ question). Comparable across KBs: what thresholds apply to."""
    confidence: float
    """0..1, lexical: the share of the question's terms (weighted by rarity) the entry holds;
    for an FAQ entry, the overlap both ways with its best-matching question."""


@dataclass(frozen=True)
class Search:
    """The result of one question."""

    question: str
    terms: tuple[str, ...]
    """The question's index terms after normalization and spelling correction."""
    hits: tuple[Hit, ...]
    """Best first, one per entry id."""
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    """The question's embedding; None without an embedder."""
    blocks: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    """Passage id -> the similarity of each of its spoken blocks (`agent.speech.blocks`
    order) to the question, for the passages among the hits."""

    def best(self, kind: HitKind) -> Hit | None:
        """The highest-ranked hit of this kind."""
        return next((h for h in self.hits if h.kind == kind), None)

    @property
    def similarity(self) -> float:
        """The best similarity among the hits; 0 when nothing matched."""
        return max((h.similarity for h in self.hits), default=0.0)

    @property
    def match(self) -> float:
        """How well the best single answer matches: the best similarity of a passage's
        sentence or step, or of an FAQ question, among the hits (0..1). A passage can be
        near a question as a whole while no sentence of it answers it; this is the number
        the agent's thresholds apply to."""
        blocks = [float(v.max()) for v in self.blocks.values() if len(v)]
        faqs = [h.similarity for h in self.hits if h.kind == "faq"]
        return max([*blocks, *faqs], default=self.similarity if not self.blocks else 0.0)

    @property
    def confidence(self) -> float:
        """The best lexical confidence among the hits; 0 when nothing matched."""
        return max((h.confidence for h in self.hits), default=0.0)


@dataclass(frozen=True)
class _Doc:
    id: str
    kind: HitKind
    match_terms: frozenset[str]
    """Passage: all its terms. FAQ: the terms of this one question."""


class Retriever:
    """The index of one KB. Immutable after construction: share it across calls and threads.

    Building embeds every unit of the KB (cached on disk by content, so only new or changed
    text is embedded again); a search is a few milliseconds (`bench/retrieval.py`).
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        embedder: Embedder | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.kb = kb
        self.normalizer = Normalizer(kb.vocabulary.replacements)
        self._embedder = embedder
        self._build_lexical(kb)
        self._units: list[Unit] = units_of(kb) if embedder is not None else []
        self._vectors = np.zeros((0, 0), np.float32)
        if embedder is not None:
            texts = [u.text for u in self._units]
            self._vectors = (cache or EmbeddingCache(None)).vectors(embedder, texts)
        unit_entries = [self._entry_index[u.entry] for u in self._units]
        # Units come grouped by entry, in entry order: an entry's best unit is a reduceat.
        self._unit_starts = _group_starts(unit_entries, len(self._entries))
        self._block_rows: dict[str, list[int]] = defaultdict(list)
        for row, unit in enumerate(self._units):
            if unit.kind == "block":
                self._block_rows[unit.entry].append(row)

    def _build_lexical(self, kb: KnowledgeBase) -> None:
        terms = self.normalizer.terms
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
        if any(corpus):
            self._bm25.index(corpus, show_progress=False)
        doc_entries: list[int] = []
        df = Counter(t for tokens in corpus for t in set(tokens))
        n = len(corpus)
        self._idf = {t: _idf(n, count) for t, count in df.items()}
        self._unseen_idf = _idf(n, 1)  # as rare as the rarest KB term, even in a tiny KB
        self._df = df
        self._deletions = _deletion_table(df)
        self._entries: list[tuple[str, HitKind]] = []
        self._entry_index: dict[str, int] = {}
        self._entry_docs: defaultdict[str, list[_Doc]] = defaultdict(list)
        for doc in self._docs:
            self._entry_docs[doc.id].append(doc)
            if doc.id not in self._entry_index:
                self._entry_index[doc.id] = len(self._entries)
                self._entries.append((doc.id, doc.kind))
            doc_entries.append(self._entry_index[doc.id])
        self._doc_starts = _group_starts(doc_entries, len(self._entries))

    @property
    def semantic(self) -> bool:
        """Whether an embedding model ranks (else BM25 alone)."""
        return self._embedder is not None

    @property
    def vocabulary(self) -> frozenset[str]:
        """Every index term of the KB."""
        return frozenset(self._df)

    def embed(self, question: str) -> np.ndarray | None:
        """The question's embedding (blocking: a few ms of model time, so call it off the
        event loop); None without an embedder."""
        if self._embedder is None:
            return None
        return self._embedder.embed([self.normalizer.text(question)])[0]

    def idf(self, term: str) -> float:
        """How rare a term is in the KB; terms the KB lacks count as the rarest."""
        return self._idf.get(term, self._unseen_idf)

    def analyze(self, question: str) -> tuple[str, ...]:
        """The question's distinct terms, with unknown words corrected to KB terms."""
        out: dict[str, None] = {}
        for term in self.normalizer.terms(question):
            out[self._correct(term)] = None
        return tuple(out)

    def search(self, question: str, vector: np.ndarray | None = None, k: int = 5) -> Search:
        """The `k` best entries for the question, best first.

        Args:
            vector: the question's embedding from `embed`; without it (or without an
                embedder) BM25 alone ranks.
        """
        query = self.analyze(question)
        lexical = self._lexical_scores(query)
        entries = len(self._entries)
        semantic = np.zeros(entries, np.float32)
        if vector is not None and len(self._units):
            unit_scores = self._vectors @ vector
            semantic = np.clip(np.maximum.reduceat(unit_scores, self._unit_starts), 0.0, 1.0)
            top = float(lexical.max())
            fused = semantic + (LEXICAL_WEIGHT / top * lexical if top > 0 else 0.0)
        else:
            unit_scores = None
            fused = lexical
        order = np.argsort(-fused, kind="stable")[:k]
        hits = []
        for index in order:
            if fused[index] <= 0.0:
                break
            entry_id, kind = self._entries[index]
            confidence = self._confidence(query, entry_id)
            similarity = float(semantic[index]) if unit_scores is not None else confidence
            hits.append(Hit(entry_id, kind, float(fused[index]), similarity, confidence))
        blocks = {}
        if unit_scores is not None:
            for hit in hits:
                rows = self._block_rows.get(hit.id)
                if rows:
                    blocks[hit.id] = unit_scores[rows]
        return Search(question, query, tuple(hits), vector, blocks)

    def _lexical_scores(self, query: tuple[str, ...]) -> np.ndarray:
        """BM25 per entry (an FAQ entry: its best question); 0 for no shared term."""
        known = [t for t in query if t in self._df]
        if not known:  # also: a KB without one index term has no BM25 index
            return np.zeros(len(self._entries), np.float32)
        per_doc = np.asarray(self._bm25.get_scores(known), np.float32)
        return np.maximum.reduceat(per_doc, self._doc_starts)

    def _confidence(self, query: Iterable[str], entry_id: str) -> float:
        return max(self._doc_confidence(query, doc) for doc in self._entry_docs[entry_id])

    def _doc_confidence(self, query: Iterable[str], doc: _Doc) -> float:
        asked = {t: self.idf(t) for t in query}
        total = sum(asked.values())
        shared = sum(w for t, w in asked.items() if t in doc.match_terms)
        if doc.kind == "passage":
            return shared / total if total else 0.0
        both = total + sum(self.idf(t) for t in doc.match_terms)
        return 2 * shared / both if both else 0.0

    def _correct(self, term: str) -> str:
        """The KB term closest to an unknown `term`, or `term` itself."""
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


def _group_starts(groups: list[int], count: int) -> np.ndarray:
    """Where each of `count` groups starts in a list sorted by group, every group present."""
    starts = np.searchsorted(np.asarray(groups, np.int64), np.arange(count))
    if len(groups) and (np.diff(groups) < 0).any():
        raise ValueError("units must come grouped by entry, in entry order")
    return starts.astype(np.int64)


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
