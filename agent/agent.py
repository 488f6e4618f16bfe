"""The knowledge-base agent: one question in, a short spoken answer out.

The path of a question, in order:

1. question guardrails (`prompt_injection`, `human_request`, `personal_contact`) answer by
   themselves;
2. retrieval over the KB (`agent.retrieval`: embeddings and BM25), with the previous
   question added for a weak follow-up, a second try or the answer to a choice;
3. the best similarity decides (`Verdict`, thresholds in `AgentSettings`, one set for
   every KB): **answer**; **unsure** (a loose match, or nothing found in a transcript speech
   recognition doubted) -> the caller is asked once to say it another way (`clarify` /
   `not_understood`) and a second miss is handed off; **out** -> `out_of_scope`, handoff.
   Two passages that answer equally well -> the caller is asked which one (`clarify`).
   A request for advice is answered only from a clear match, else handed off (`advice`);
   a price question the KB does not answer gets `price_message` (`price`);
4. a confident FAQ match -> its answer as written (the FAQ fast path);
5. otherwise the backend (extractive, or Ollama: see `agent.selection`) writes the
   answer from the passages;
6. every sentence passes the answer guardrails (`price`, `unknown_contact`, `advice`)
   before it is yielded, whichever backend wrote it; a price from the KB is followed by the
   price note. A backend's acknowledgement (`AnswerText.filler`: "Let me check that for
   you.") is passed through as it is.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from agent import guardrails
from agent.backend import AnswerBackend, BackendRequest
from agent.embedder import Embedder, shared_embedder
from agent.embeddings import EmbeddingCache
from agent.extractive import ExtractiveBackend
from agent.kb import FaqEntry, KnowledgeBase, KnowledgeBaseWatcher, Passage, demo_kb_dir, load_kb
from agent.retrieval import Hit, Retriever, Search
from agent.speech import SentenceBuffer, lower_first, split_sentences
from agent.standby import StandbyBackend
from agent.types import AgentSettings, AnswerEnd, AnswerEvent, AnswerText, Exchange
from agent.vocabulary import hotwords, proper_nouns

log = logging.getLogger(__name__)

# "and how long does that take?", "what about the other one": the question leans on the last one.
_FOLLOW_UP = re.compile(r"^(and|also|so|but|what about|how about)\b|\b(that|it|this|those|them)\b")

# "and who pays for ...", "what about ...": a follow-up even when it names its own topic.
_LEANS = re.compile(r"^(and|also|what about|how about)\b")

Band = Literal["answer", "unsure", "out"]

_FIRST = re.compile(r"\b(first|former|1st|one before)\b")
_SECOND = re.compile(r"\b(second|latter|2nd|last one|other one)\b")
_NEITHER = re.compile(r"\b(neither|none|nor)\b")
"""An answer to a choice that picks by position, or picks neither."""

CHOICE_WORDS = 8
"""An answer to "is it about A, or B?" is this short ("the flashing one"); a longer reply is
taken as a question of its own."""

VAGUE_MARGIN = 0.1
VAGUE_TERMS = 4
"""A question is vague enough to ask which passage the caller means only when its best match
is less than VAGUE_MARGIN above `answer_similarity` and it holds at most VAGUE_TERMS topic
words ("that light doesn't work")."""


@dataclass(frozen=True)
class _Index:
    """Everything derived from one KB; replaced as a whole when the KB reloads."""

    kb: KnowledgeBase
    retriever: Retriever
    guard: guardrails.OutputGuard
    vocabulary: str
    names: frozenset[str]

    @classmethod
    def build(cls, kb: KnowledgeBase, embedder: Embedder | None, cache_dir: Path | None) -> _Index:
        cache = EmbeddingCache(cache_dir, kb.root) if embedder is not None else None
        return cls(
            kb,
            Retriever(kb, embedder, cache),
            guardrails.OutputGuard(kb.all_text()),
            hotwords(kb),
            proper_nouns(kb),
        )


def default_backend(settings: AgentSettings) -> AnswerBackend:
    """The backend the settings ask for, without contacting Ollama: `auto` and
    `extractive` give the extractive backend, `ollama` a `StandbyBackend` that
    checks Ollama when the first question comes. `agent.selection.build_agent` checks
    Ollama first and resolves `auto`.
    """
    if settings.backend == "ollama":
        return StandbyBackend(settings)
    return ExtractiveBackend(settings)


class KnowledgeAgent:
    """Implements `agent.types.Agent` over a knowledge base.

    One instance serves every call at once: it keeps no per-call state (a call's own state,
    such as a question asked again, travels in its memory), and `use_kb` swaps the KB
    atomically (calls already answering finish on the KB they started with). The question's
    embedding runs in a thread; the rest of retrieval takes a millisecond or two on the loop.
    """

    def __init__(
        self,
        settings: AgentSettings,
        kb: KnowledgeBase,
        backend: AnswerBackend | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        """
        Args:
            embedder: ranks by meaning; by default the process's shared one for
                `settings.embedding_model` (none when that is "").

        Raises:
            EmbedderError: the embedding model cannot be loaded.
        """
        self.settings = settings
        self.backend = backend if backend is not None else default_backend(settings)
        if embedder is None and settings.embedding_model:
            embedder = shared_embedder(settings.embedding_model)
        self._embedder = embedder
        self._index = _Index.build(kb, embedder, settings.embedding_cache_dir)

    @classmethod
    def from_settings(cls, settings: AgentSettings) -> KnowledgeAgent:
        """Load `settings.kb_dir` (the demo KB when None); the backend is
        `default_backend` (no network check: see `agent.selection.build_agent`).

        Raises:
            KbError: the KB is malformed.
            EmbedderError: the embedding model cannot be loaded.
        """
        return cls(settings, load_kb(settings.kb_dir or demo_kb_dir()))

    @property
    def kb(self) -> KnowledgeBase:
        """The KB in service."""
        return self._index.kb

    @property
    def retriever(self) -> Retriever:
        """The index of the KB in service."""
        return self._index.retriever

    def use_kb(self, kb: KnowledgeBase) -> None:
        """Serve a new KB from now on. Blocking (it embeds what is new in the KB), so it runs
        in a thread; calls go on with the previous KB until the new index is built."""
        self._index = _Index.build(kb, self._embedder, self.settings.embedding_cache_dir)

    async def watch_kb(self, interval_s: float = 2.0) -> None:
        """Reload the KB directory whenever its files change, until cancelled.

        A KB that fails to load is logged and the previous one stays in service.
        """
        watcher = KnowledgeBaseWatcher(self.kb.root, on_reload=self.use_kb, current=self.kb)
        await watcher.watch(interval_s)

    async def watch_backend(self) -> None:
        """Keep checking the backend's server (Ollama with `backend="ollama"`) every
        `health_retry_s` until cancelled; returns at once when the backend needs no checks.

        Optional: without it the backend still re-checks, when questions come in.
        """
        if isinstance(self.backend, StandbyBackend):
            await self.backend.watch()

    async def aclose(self) -> None:
        """Stop the backend's background check, if one is running. The agent stays usable."""
        if isinstance(self.backend, StandbyBackend):
            await self.backend.aclose()

    def vocabulary(self) -> str:
        """KB names and terms for speech recognition (under 200 characters)."""
        return self._index.vocabulary

    async def answer(
        self, question: str, memory: Sequence[Exchange], *, heard_clearly: bool = True
    ) -> AsyncGenerator[AnswerEvent, None]:
        """Stream the answer: `AnswerText` pieces (one per sentence), then one `AnswerEnd`.

        Cancelling the iteration or calling `aclose()` (barge-in) is safe: the backend's
        generator is closed too.
        """
        index = self._index
        verdict = guardrails.check_question(question)
        if verdict is not None:
            yield AnswerText(verdict.reply)
            yield AnswerEnd(handoff=verdict.handoff, rules=(verdict.rule,), backend="guardrail")
            return
        recent = tuple(memory)[-self.settings.memory_turns :] if self.settings.memory_turns else ()
        search = await self._search(index, question, recent)
        decision = self.decide(index, search, question, recent, heard_clearly)
        if decision.reply is not None:
            yield AnswerText(decision.reply)
            yield decision.end
            return
        if decision.faq is not None:
            events = _faq_answer(decision.faq)
        else:
            request = BackendRequest(search.question, search, decision.passages, index.kb, recent)
            events = self.backend.answer(request)
        advice = guardrails.touches_advice(question)
        price = guardrails.asks_price(question)
        guarded = self._guarded(events, index.guard, advice, price)
        async with aclosing(events), aclosing(guarded):
            async for event in guarded:
                yield event

    # ------------------------------------------------------------ deciding

    def band(self, index: _Index, search: Search) -> Band:
        """Whether the best hit answers the question, might, or does not."""
        s = self.settings
        if index.retriever.semantic:
            best = search.match
            answer, unsure = s.answer_similarity, s.unsure_similarity
        else:
            best = search.confidence
            answer, unsure = s.min_confidence, s.min_confidence * 0.8
        if best >= answer:
            return "answer"
        return "unsure" if best >= unsure else "out"

    def decide(
        self,
        index: _Index,
        search: Search,
        question: str,
        memory: tuple[Exchange, ...],
        heard_clearly: bool,
    ) -> Decision:
        """What to do with a searched question: pure, given the index the search ran on (a
        KB reloaded meanwhile is not mixed in)."""
        s = self.settings
        band = self.band(index, search)
        second_try = bool(memory) and _asked_again(memory[-1])
        offered = second_try and len(memory[-1].sources) >= 2
        if offered and _NEITHER.search(guardrails.flatten(question)):  # neither passage: a person
            return Decision.say(s.handoff_message, guardrails.OUT_OF_SCOPE, handoff=True)
        price = guardrails.asks_price(question)
        unclear = band != "answer" or not self._clear(index, search)
        if guardrails.asks_advice(question) and unclear:
            return Decision.say(s.handoff_message, guardrails.ADVICE, handoff=True)
        if guardrails.off_topic(question) and unclear and heard_clearly:  # no need to ask again
            return Decision.say(s.handoff_message, guardrails.OUT_OF_SCOPE, handoff=True)
        if band != "answer":
            if price:
                return Decision.say(s.price_message, guardrails.PRICE)
            ask_again = band == "unsure" or not heard_clearly
            if ask_again and not second_try:
                rule = guardrails.NOT_UNDERSTOOD if not heard_clearly else guardrails.CLARIFY
                return Decision.say(s.rephrase_message, rule, backend="clarify")
            return Decision.say(s.handoff_message, guardrails.OUT_OF_SCOPE, handoff=True)
        passages = self._passages(index, search)
        alone = search.question == question
        faq = self._faq_match(index, search) if alone else None  # a follow-up asks something new
        follows = bool(memory) and _LEANS.match(question.lower()) is not None
        if faq is None and not second_try and alone and not follows:
            choice = self._choice(index, search, passages)
            if choice is not None:
                return choice
        if price and not any(_states_price(p) for p in self._price_sources(passages, faq)):
            return Decision.say(s.price_message, guardrails.PRICE)
        if faq is None and not passages:
            faq = _best_faq(index, search)  # an answering FAQ entry that names no passage
        if faq is not None:
            return Decision(faq=faq)
        if not passages:
            return Decision.say(s.handoff_message, guardrails.OUT_OF_SCOPE, handoff=True)
        return Decision(passages=passages)

    def _clear(self, index: _Index, search: Search) -> bool:
        """A match clear enough to answer a request for advice: well above the answer line."""
        if not index.retriever.semantic:
            return search.confidence >= self.settings.min_confidence + 0.2
        return search.match >= self.settings.answer_similarity + 0.15

    def _passages(self, index: _Index, search: Search) -> tuple[Passage, ...]:
        """The passages to answer from, best first: those that answer, and the passage an
        answering FAQ entry comes from."""
        kb = index.kb
        threshold = (
            self.settings.answer_similarity
            if index.retriever.semantic
            else self.settings.min_confidence
        )
        out: dict[str, Passage] = {}
        for hit in search.hits:
            if _strength(hit, index.retriever.semantic) < threshold:
                continue
            entry = kb.get(hit.id)
            if isinstance(entry, Passage):
                out.setdefault(entry.id, entry)
            elif entry.source is not None:
                out.setdefault(entry.source, kb.passage(entry.source))
        return tuple(out.values())

    def _faq_match(self, index: _Index, search: Search) -> FaqEntry | None:
        """The FAQ entry to answer with as written: a close match that nothing beats (or
        only the passage the entry comes from)."""
        hit = search.best("faq")
        if hit is None:
            return None
        semantic = index.retriever.semantic
        top = search.hits[0]
        if (
            hit is not top
            and _faq_source(index.kb, hit) != top.id
            and _strength(top, semantic) > _strength(hit, semantic)
        ):
            return None
        needed = self.settings.faq_similarity if semantic else self.settings.faq_min_confidence
        if (hit.similarity if semantic else hit.confidence) < needed:
            return None
        entry = index.kb.get(hit.id)
        return entry if isinstance(entry, FaqEntry) else None

    def _choice(
        self, index: _Index, search: Search, passages: tuple[Passage, ...]
    ) -> Decision | None:
        """Ask which passage the caller means when the two best answer about equally well
        and are about different things."""
        hits = [h for h in search.hits if h.kind == "passage" and h.id in search.blocks]
        if len(passages) < 2 or len(hits) < 2 or not index.retriever.semantic:
            return None
        first, second = hits[0], hits[1]
        a_match, b_match = (float(search.blocks[h.id].max()) for h in (first, second))
        vague = (
            search.match < self.settings.answer_similarity + VAGUE_MARGIN
            and len(search.terms) <= VAGUE_TERMS
        )
        if not vague or abs(a_match - b_match) > self.settings.choice_margin:
            return None
        kb = index.kb
        a, b = kb.passage(first.id), kb.passage(second.id)
        if a.heading.lower() == b.heading.lower():
            return None
        names = index.names
        text = self.settings.choice_message.format(
            first=_spoken_heading(a.heading, names), second=_spoken_heading(b.heading, names)
        )
        return Decision.say(text, guardrails.CLARIFY, backend="clarify", sources=(a.id, b.id))

    def _price_sources(self, passages: tuple[Passage, ...], faq: FaqEntry | None) -> list[str]:
        texts = [p.text for p in passages]
        if faq is not None:
            texts.append(faq.answer)
        return texts

    async def _search(self, index: _Index, question: str, memory: tuple[Exchange, ...]) -> Search:
        """Search the question; a weak follow-up, or a second try or the answer to a choice
        that is weak on its own, also with the previous question, keeping the better search."""
        retriever = index.retriever
        alone = await self._search_text(retriever, question)
        if not memory:
            return alone
        last = memory[-1]
        follow_up = _FOLLOW_UP.search(guardrails.flatten(question)) is not None
        weak = self.band(index, alone) != "answer" or len(alone.terms) <= 1
        leans = _LEANS.match(question.lower()) is not None
        # After the caller was asked again, a question clear on its own is searched alone:
        # the caller moved on from what was asked back.
        second_try = _asked_again(last) and (weak or follow_up)
        if not (second_try or (follow_up and (weak or leans))):
            return alone
        together = await self._search_text(retriever, f"{last.question} {question}")
        chose = guardrails.CLARIFY in last.rules and len(last.sources) >= 2
        said = guardrails.flatten(question)
        if chose and len(said.split()) <= CHOICE_WORDS and not _NEITHER.search(said):
            offered = [h for h in together.hits if h.id in last.sources]
            named = _ordinal(said, last.sources)
            if named is not None:
                offered = [h for h in offered if h.id == named] or offered
            if offered:  # the caller chose: only the passage they chose is read
                chosen = max(offered, key=lambda h: h.similarity)
                blocks = {k: v for k, v in together.blocks.items() if k == chosen.id}
                return replace(together, hits=(chosen,), blocks=blocks)
        better = _strength(together.hits[0], retriever.semantic) if together.hits else 0.0
        worse = _strength(alone.hits[0], retriever.semantic) if alone.hits else 0.0
        return together if better >= worse else alone

    async def _search_text(self, retriever: Retriever, text: str) -> Search:
        vector = await asyncio.to_thread(retriever.embed, text) if retriever.semantic else None
        return retriever.search(text, vector)

    # ------------------------------------------------------------ checking the answer

    async def _guarded(
        self,
        events: AsyncIterator[AnswerEvent],
        guard: guardrails.OutputGuard,
        advice: bool,
        price: bool = False,
    ) -> AsyncGenerator[AnswerEvent, None]:
        """Re-split the backend's text into sentences and check each one before it is yielded.

        The price note follows an answer that states what something costs from the KB (an
        amount in a sentence about a cost, or any answer to a price question that names one,
        "free" included); not a limit or a credit stated in money. A price question answered
        with no price is told the KB has none (`price_message`)."""
        buffer = SentenceBuffer()
        rules: list[str] = []
        spoken: list[str] = []
        priced: list[bool] = []
        end = AnswerEnd()
        async for event in events:
            if isinstance(event, AnswerEnd):
                end = event
                break
            if event.filler:
                yield event
                continue
            for sentence in buffer.feed(event.text):
                for text in self._check(sentence, guard, rules, spoken, priced):
                    yield AnswerText(text)
        rest = buffer.flush()
        for sentence in split_sentences(rest) if rest else []:
            for text in self._check(sentence, guard, rules, spoken, priced):
                yield AnswerText(text)
        for rule in end.rules:
            _add(rules, rule)
        handoff = end.handoff or not spoken
        if handoff:
            if not end.rules:  # the backend gave no other reason: the passages fell short
                _add(rules, guardrails.OUT_OF_SCOPE)
            if not spoken:
                yield AnswerText(self.settings.handoff_message)
        else:
            costs = price or any(guardrails.about_price(text) for text in spoken)
            quoted = price and any(guardrails.states_price(text) for text in spoken)
            noted = (any(priced) and costs) or quoted
            said_note = any(self.settings.price_note in text for text in spoken)
            if noted and not said_note:
                yield AnswerText(" " + self.settings.price_note)
            elif price and not said_note:  # asked what it costs, and what was said is no price
                _add(rules, guardrails.PRICE)
                yield AnswerText(" " + self.settings.price_message)
            if advice or guardrails.ADVICE in rules:
                _add(rules, guardrails.ADVICE)
                yield AnswerText(" " + guardrails.ADVICE_DISCLAIMER)
        yield AnswerEnd(
            sources=end.sources, handoff=handoff, rules=tuple(rules), backend=end.backend
        )

    def _check(
        self,
        sentence: str,
        guard: guardrails.OutputGuard,
        rules: list[str],
        spoken: list[str],
        priced: list[bool],
    ) -> list[str]:
        """The sentence as it may be spoken (with its separating space), or nothing when it
        repeats one already spoken (two cut prices become one price message) or the answer is
        already `max_sentences` plus the allowed steps long."""
        checked = guard.check(sentence)
        for rule in checked.rules:
            _add(rules, rule)
        limit = self.settings.max_sentences + self.settings.max_steps + 1
        if checked.text in spoken or len(spoken) >= limit:
            return []
        spoken.append(checked.text)
        priced.append(checked.priced)
        return [checked.text if len(spoken) == 1 else " " + checked.text]


@dataclass(frozen=True)
class Decision:
    """What the agent does with a question: say a fixed reply, answer from an FAQ entry, or
    have the backend answer from passages."""

    reply: str | None = None
    end: AnswerEnd = AnswerEnd()
    faq: FaqEntry | None = None
    passages: tuple[Passage, ...] = ()

    @classmethod
    def say(
        cls,
        reply: str,
        rule: str,
        *,
        handoff: bool = False,
        backend: str = "guardrail",
        sources: tuple[str, ...] = (),
    ) -> Decision:
        end = AnswerEnd(sources=sources, handoff=handoff, rules=(rule,), backend=backend)
        return cls(reply=reply, end=end)


def _faq_source(kb: KnowledgeBase, hit: Hit) -> str | None:
    entry = kb.get(hit.id)
    return entry.source if isinstance(entry, FaqEntry) else None


def _ordinal(said: str, offered: tuple[str, ...]) -> str | None:
    """The offered passage an answer names by position ("the second one"), if it does."""
    if _FIRST.search(said) and not _SECOND.search(said):
        return offered[0]
    if _SECOND.search(said) and not _FIRST.search(said):
        return offered[1]
    return None


def _best_faq(index: _Index, search: Search) -> FaqEntry | None:
    hit = search.best("faq")
    if hit is None:
        return None
    entry = index.kb.get(hit.id)
    return entry if isinstance(entry, FaqEntry) else None


def _asked_again(exchange: Exchange) -> bool:
    """The agent asked the caller to repeat or to choose on that turn."""
    return bool({guardrails.CLARIFY, guardrails.NOT_UNDERSTOOD} & set(exchange.rules))


def _strength(hit: Hit, semantic: bool) -> float:
    return hit.similarity if semantic else hit.confidence


def _states_price(text: str) -> bool:
    return any(guardrails.states_price(s) for s in split_sentences(text))


def _spoken_heading(heading: str, names: frozenset[str]) -> str:
    """A heading as it reads inside a sentence: "Moving Home" -> "moving home"."""
    words = [w if w in names or w.isupper() else w.lower() for w in heading.split()]
    return lower_first(" ".join(words), names).rstrip(".?!")


def _add(rules: list[str], rule: str) -> None:
    if rule not in rules:
        rules.append(rule)


async def _faq_answer(entry: FaqEntry) -> AsyncGenerator[AnswerEvent, None]:
    """The FAQ fast path: the entry's answer as written."""
    yield AnswerText(entry.answer)
    sources = (entry.id, entry.source) if entry.source else (entry.id,)
    yield AnswerEnd(sources=sources, backend="faq")
