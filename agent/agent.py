"""The knowledge-base agent: one question in, a short spoken answer out.

The path of a question, in order:

1. question guardrails (``prompt_injection``, ``human_request``, ``price``) answer by themselves;
2. retrieval over the KB, with the previous question added for a weak follow-up;
3. no confident hit -> ``out_of_scope``: the handoff message, handoff;
4. a confident FAQ match -> its answer as written (the FAQ fast path);
5. otherwise the backend (extractive, or Ollama: see :mod:`agent.selection`) writes the
   answer from the passages;
6. every sentence passes the answer guardrails (``price``, ``unknown_contact``, ``advice``)
   before it is yielded, whichever backend wrote it. A backend's acknowledgement
   (``AnswerText.filler``: "Let me check that for you.") is passed through as it is.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from agent import guardrails
from agent.backend import AnswerBackend, BackendRequest
from agent.extractive import ExtractiveBackend
from agent.kb import FaqEntry, KnowledgeBase, KnowledgeBaseWatcher, demo_kb_dir, load_kb
from agent.retrieval import Retriever, Search
from agent.speech import SentenceBuffer, split_sentences
from agent.standby import StandbyBackend
from agent.types import AgentSettings, AnswerEnd, AnswerEvent, AnswerText, Exchange
from agent.vocabulary import hotwords

# "and how long does that take?", "what about the camera": the question leans on the last one.
_FOLLOW_UP = re.compile(r"^(and|also|so|but|what about|how about)\b|\b(that|it|this|those|them)\b")


@dataclass(frozen=True)
class _Index:
    """Everything derived from one KB; replaced as a whole when the KB reloads."""

    kb: KnowledgeBase
    retriever: Retriever
    guard: guardrails.OutputGuard
    vocabulary: str

    @classmethod
    def build(cls, kb: KnowledgeBase) -> _Index:
        return cls(kb, Retriever(kb), guardrails.OutputGuard(kb.all_text()), hotwords(kb))


def default_backend(settings: AgentSettings) -> AnswerBackend:
    """The backend the settings ask for, without contacting Ollama: ``auto`` and
    ``extractive`` give the extractive backend, ``ollama`` a :class:`StandbyBackend` that
    checks Ollama when the first question comes. :func:`agent.selection.build_agent` checks
    Ollama first and resolves ``auto``.
    """
    if settings.backend == "ollama":
        return StandbyBackend(settings)
    return ExtractiveBackend(settings)


class KnowledgeAgent:
    """Implements :class:`agent.types.Agent` over a knowledge base.

    One instance serves every call at once: it keeps no per-call state, and :meth:`use_kb`
    swaps the KB atomically (calls already answering finish on the KB they started with).
    Retrieval is pure Python and takes well under 10 ms, so it runs on the event loop.
    """

    def __init__(
        self,
        settings: AgentSettings,
        kb: KnowledgeBase,
        backend: AnswerBackend | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend if backend is not None else default_backend(settings)
        self._index = _Index.build(kb)

    @classmethod
    def from_settings(cls, settings: AgentSettings) -> KnowledgeAgent:
        """Load ``settings.kb_dir`` (the demo KB when None); the backend is
        :func:`default_backend` (no network check: see :func:`agent.selection.build_agent`).

        Raises:
            KbError: the KB is malformed.
        """
        return cls(settings, load_kb(settings.kb_dir or demo_kb_dir()))

    @property
    def kb(self) -> KnowledgeBase:
        """The KB in service."""
        return self._index.kb

    def use_kb(self, kb: KnowledgeBase) -> None:
        """Serve a new KB from now on. Thread-safe; builds the index before swapping."""
        self._index = _Index.build(kb)

    async def watch_kb(self, interval_s: float = 2.0) -> None:
        """Reload the KB directory whenever its files change, until cancelled.

        A KB that fails to load is logged and the previous one stays in service.
        """
        watcher = KnowledgeBaseWatcher(self.kb.root, on_reload=self.use_kb, current=self.kb)
        await watcher.watch(interval_s)

    async def watch_backend(self) -> None:
        """Keep checking the backend's server (Ollama with ``backend="ollama"``) every
        ``health_retry_s`` until cancelled; returns at once when the backend needs no checks.

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
        self, question: str, memory: Sequence[Exchange]
    ) -> AsyncGenerator[AnswerEvent, None]:
        """Stream the answer: ``AnswerText`` pieces (one per sentence), then one ``AnswerEnd``.

        Cancelling the iteration or calling ``aclose()`` (barge-in) is safe: the backend's
        generator is closed too.
        """
        index = self._index
        verdict = guardrails.check_question(question)
        if verdict is not None:
            yield AnswerText(verdict.reply)
            yield AnswerEnd(handoff=verdict.handoff, rules=(verdict.rule,), backend="guardrail")
            return
        recent = tuple(memory)[-self.settings.memory_turns :] if self.settings.memory_turns else ()
        search = self._search(index.retriever, question, recent)
        faq = self._faq_match(index.kb, search)
        passages = tuple(
            index.kb.passage(h.id)
            for h in search.hits
            if h.kind == "passage" and h.confidence >= self.settings.min_confidence
        )
        if faq is None and not passages:
            yield AnswerText(self.settings.handoff_message)
            yield AnswerEnd(handoff=True, rules=(guardrails.OUT_OF_SCOPE,), backend="guardrail")
            return
        if faq is not None:
            events = _faq_answer(faq)
        else:
            request = BackendRequest(search.question, search, passages, index.kb, recent)
            events = self.backend.answer(request)
        advice = guardrails.touches_advice(question)
        guarded = self._guarded(events, index.guard, advice)
        async with aclosing(events), aclosing(guarded):
            async for event in guarded:
                yield event

    def _search(self, retriever: Retriever, question: str, memory: tuple[Exchange, ...]) -> Search:
        """Search the question; for a weak follow-up, search it with the previous question."""
        alone = retriever.search(question)
        weak = alone.confidence < self.settings.min_confidence or len(alone.terms) <= 1
        if not (memory and weak and _FOLLOW_UP.search(guardrails.flatten(question))):
            return alone
        together = retriever.search(f"{memory[-1].question} {question}")
        return together if together.confidence >= self.settings.min_confidence else alone

    def _faq_match(self, kb: KnowledgeBase, search: Search) -> FaqEntry | None:
        hit = search.best("faq")
        if hit is None or hit.confidence < self.settings.faq_min_confidence:
            return None
        entry = kb.get(hit.id)
        return entry if isinstance(entry, FaqEntry) else None

    async def _guarded(
        self, events: AsyncIterator[AnswerEvent], guard: guardrails.OutputGuard, advice: bool
    ) -> AsyncGenerator[AnswerEvent, None]:
        """Re-split the backend's text into sentences and check each one before it is yielded."""
        buffer = SentenceBuffer()
        rules: list[str] = []
        spoken: list[str] = []
        end = AnswerEnd()
        async for event in events:
            if isinstance(event, AnswerEnd):
                end = event
                break
            if event.filler:
                yield event
                continue
            for sentence in buffer.feed(event.text):
                for text in self._check(sentence, guard, rules, spoken):
                    yield AnswerText(text)
        rest = buffer.flush()
        for sentence in split_sentences(rest) if rest else []:
            for text in self._check(sentence, guard, rules, spoken):
                yield AnswerText(text)
        for rule in end.rules:
            _add(rules, rule)
        handoff = end.handoff or not spoken
        if handoff:
            if not end.rules:  # the backend gave no other reason: the passages fell short
                _add(rules, guardrails.OUT_OF_SCOPE)
            if not spoken:
                yield AnswerText(self.settings.handoff_message)
        elif advice or guardrails.ADVICE in rules:
            _add(rules, guardrails.ADVICE)
            yield AnswerText(" " + guardrails.ADVICE_DISCLAIMER)
        yield AnswerEnd(
            sources=end.sources, handoff=handoff, rules=tuple(rules), backend=end.backend
        )

    def _check(
        self, sentence: str, guard: guardrails.OutputGuard, rules: list[str], spoken: list[str]
    ) -> list[str]:
        """The sentence as it may be spoken (with its separating space), or nothing when it
        repeats one already spoken (two prices become one price message) or the answer is
        already ``max_sentences`` plus the allowed steps long."""
        checked = guard.check(sentence)
        for rule in checked.rules:
            _add(rules, rule)
        limit = self.settings.max_sentences + self.settings.max_steps + 1
        if checked.text in spoken or len(spoken) >= limit:
            return []
        spoken.append(checked.text)
        return [checked.text if len(spoken) == 1 else " " + checked.text]


def _add(rules: list[str], rule: str) -> None:
    if rule not in rules:
        rules.append(rule)


async def _faq_answer(entry: FaqEntry) -> AsyncGenerator[AnswerEvent, None]:
    """The FAQ fast path: the entry's answer as written."""
    yield AnswerText(entry.answer)
    sources = (entry.id, entry.source) if entry.source else (entry.id,)
    yield AnswerEnd(sources=sources, backend="faq")
