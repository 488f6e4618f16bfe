"""The `ollama` backend: a local LLM (phi3:mini by default) writes the answer from the passages.

One answer is one streaming `/api/chat` request through the official `ollama` client. Two
tasks share the work: a producer reads the HTTP stream into a bounded queue, and the answer's
async generator takes pieces from it with the timeouts of `agent.types.AgentSettings`,
so a slow or broken model never holds the caller in silence:

- nothing from the model after `first_token_ack_s`: `ack_message` is spoken first;
- the model fails (connection refused, HTTP 5xx, model not pulled, no first token within
  `first_token_timeout_s`, stream cut or stalled) before a sentence was spoken: the extractive
  answer is spoken instead; after: `llm_failure_message` and a handoff. Either way
  `llm_fallback` is recorded in `AnswerEnd.rules` and the reason is logged.

Each failure counts toward the backend's `agent.breaker.CircuitBreaker`: after
`breaker_failures` in a row, questions skip the model for `breaker_open_s` and get the
extractive answer at once, without a connection to Ollama (`llm_fallback` and
`llm_skipped` recorded, "ollama skipped: 3 failures in a row, retrying in 12.3 s" logged).

Closing the answer (barge-in) cancels the producer, which closes the HTTP stream; it is
neither a success nor a failure for the breaker.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, cast

import ollama

import prompts
from agent.backend import AnswerBackend, BackendRequest
from agent.breaker import Attempt, CircuitBreaker
from agent.extractive import ExtractiveBackend
from agent.health import FAILURES, client_options, describe_error, ssl_context
from agent.llm import ReplyFilter, chat_messages, passage_budget, prompt_ids, system_prompt
from agent.types import AgentSettings, AnswerEnd, AnswerEvent, AnswerText

log = logging.getLogger(__name__)

LLM_FALLBACK = "llm_fallback"
"""Recorded in `AnswerEnd.rules` when the LLM did not write (all of) the answer."""

LLM_SKIPPED = "llm_skipped"
"""Recorded with `LLM_FALLBACK` when the LLM was not even called: its breaker is open."""


@dataclass(frozen=True)
class _Done:
    """The stream's final object arrived."""

    complete: bool
    """False when the model stopped at `num_predict` (its last sentence is unfinished)."""


@dataclass(frozen=True)
class _Failed:
    reason: str
    """For the log: what went wrong, in words."""


_Item = str | _Done | _Failed


class OllamaBackend:
    """Streams answers from Ollama. Share it across calls: its only state between answers is
    the breaker, which all calls share (from one event loop).

    Each answer opens its own HTTP connection and closes it when the answer ends or is
    closed, so nothing outlives an answer and there is nothing to shut down.
    """

    name = "ollama"

    def __init__(
        self,
        settings: AgentSettings,
        fallback: AnswerBackend | None = None,
        guardrail_prompt: str | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """
        Args:
            settings: model, URL, options, timeouts and the breaker's limits.
            fallback: answers when the model fails; the extractive backend by default.
            guardrail_prompt: the system prompt's rules; `prompts/guardrail.md` by default.
            breaker: counts the model's failures; by default one from `breaker_failures`
                and `breaker_open_s`.
        """
        self._settings = settings
        self._fallback = fallback if fallback is not None else ExtractiveBackend(settings)
        self._prompt = guardrail_prompt if guardrail_prompt is not None else load_prompt()
        self.breaker = (
            breaker
            if breaker is not None
            else CircuitBreaker(settings.breaker_failures, settings.breaker_open_s)
        )
        """Shared by every answer of this backend; `breaker.state` says whether questions
        skip the model now (for readiness checks and metrics)."""
        ssl_context()  # built here, at start, rather than on the event loop in the first call

    def _client(self) -> ollama.AsyncClient:
        s = self._settings
        return ollama.AsyncClient(**client_options(s, s.total_timeout_s))

    async def answer(self, request: BackendRequest) -> AsyncGenerator[AnswerEvent, None]:
        """Yield the model's answer sentence by sentence, then its `AnswerEnd`.

        Never raises for a model or network failure: it falls back (see the module docstring).
        """
        attempt = self.breaker.attempt()
        if attempt is None:
            refusal = self.breaker.refusal()
            log.info("%s; the %s backend answers", refusal, self._fallback.name)
            async with aclosing(
                fallback_answer(self._fallback, request, (LLM_FALLBACK, LLM_SKIPPED))
            ) as events:
                async for event in events:
                    yield event
            return
        s = self._settings
        memory, question = request.memory, request.question
        budget = passage_budget(s.num_ctx, s.num_predict, self._prompt, memory, question)
        system = system_prompt(self._prompt, request.passages, budget)
        messages = chat_messages(system, memory, question)
        queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max(64, s.num_predict + 16))
        producer = asyncio.create_task(self._produce(messages, queue), name="ollama-chat")
        ids = prompt_ids(system, request.passages)
        try:
            async for event in self._relay(request, queue, ids, attempt):
                yield event
        finally:
            attempt.abandon()  # closed before an outcome (barge-in); else a no-op
            producer.cancel()
            await asyncio.wait({producer})

    async def _produce(self, messages: list[dict[str, str]], queue: asyncio.Queue[_Item]) -> None:
        """Read the chat stream into `queue`: text pieces, then `_Done` or `_Failed`.

        The queue holds more items than `num_predict` allows, so a slow listener never
        holds up reading and `total_timeout_s` measures the model alone.
        """
        s = self._settings
        try:
            async with asyncio.timeout(s.total_timeout_s), self._client() as client:
                stream = await client.chat(
                    model=s.model,
                    messages=messages,
                    stream=True,
                    keep_alive=keep_alive(s.keep_alive),
                    options={
                        "num_ctx": s.num_ctx,
                        "num_predict": s.num_predict,
                        "temperature": s.temperature,
                    },
                )
                item = await _read(stream, queue)
        except TimeoutError:
            item = _Failed(f"no complete answer within total_timeout_s={s.total_timeout_s} s")
        except FAILURES as err:
            item = _Failed(describe_error(err, s))
        await queue.put(item)

    async def _relay(
        self,
        request: BackendRequest,
        queue: asyncio.Queue[_Item],
        ids: tuple[str, ...],
        attempt: Attempt,
    ) -> AsyncGenerator[AnswerEvent, None]:
        """The answer as the caller hears it, from the producer's queue, with the timeouts.

        The first-token clock runs from the question; the stall clock from each time this
        waits on an empty queue, so time the listener spent elsewhere never counts. The
        outcome goes to `attempt` as soon as it is known, before the rest is yielded.
        """
        s = self._settings
        loop = asyncio.get_running_loop()
        reply = ReplyFilter()
        ack_at = loop.time() + s.first_token_ack_s
        deadline = loop.time() + s.first_token_timeout_s
        heard = False
        said = 0
        while True:
            wait = s.stall_timeout_s if heard else min(ack_at, deadline) - loop.time()
            item = await _get(queue, wait)
            if item is None and not heard and ack_at < deadline and loop.time() < deadline:
                ack_at = math.inf
                yield AnswerText(s.ack_message.rstrip() + " ", filler=True)
                continue
            if item is None:
                limit = f"stall_timeout_s={s.stall_timeout_s}" if heard else "first_token_timeout_s"
                item = _Failed(f"the model sent no text within {limit} ({wait:.1f} s)")
            if isinstance(item, _Failed):
                async for event in self._recover(request, item.reason, said > 0, attempt):
                    yield event
                return
            if isinstance(item, str):
                heard = heard or bool(item)
                sentences = reply.feed(item)
            else:
                sentences = reply.finish(item.complete)
                if said or sentences or reply.handoff:  # else _end finds it empty: a failure
                    attempt.succeeded()
            for sentence in sentences:
                said += 1
                yield AnswerText(sentence if said == 1 else " " + sentence)
            if isinstance(item, _Done):
                break
        async for event in self._end(request, reply, said, ids, attempt):
            yield event

    async def _end(
        self,
        request: BackendRequest,
        reply: ReplyFilter,
        said: int,
        ids: tuple[str, ...],
        attempt: Attempt,
    ) -> AsyncGenerator[AnswerEvent, None]:
        """The `AnswerEnd` of a reply the model finished."""
        if reply.handoff:
            if said:  # part of an answer, then the marker: say why the call moves on
                yield AnswerText(" " + self._settings.handoff_message)
            yield AnswerEnd(handoff=True, backend=self.name)
            return
        if not said:
            empty = "the model's reply had nothing to say"
            async for event in self._recover(request, empty, False, attempt):
                yield event
            return
        cited = tuple(i for i in reply.cited if i in ids)
        yield AnswerEnd(sources=cited or (request.passages[0].id,), backend=self.name)

    async def _recover(
        self, request: BackendRequest, reason: str, said: bool, attempt: Attempt
    ) -> AsyncGenerator[AnswerEvent, None]:
        """After a failure: the apology and a handoff when part of the answer was spoken,
        otherwise the fallback backend's whole answer. The failure counts for the breaker."""
        attempt.failed(reason)
        if said:
            log.warning("ollama failed mid-answer (%s); apologising and handing off", reason)
            yield AnswerText(" " + self._settings.llm_failure_message)
            yield AnswerEnd(handoff=True, rules=(LLM_FALLBACK,), backend=self.name)
            return
        log.warning("ollama failed (%s); the %s backend answers", reason, self._fallback.name)
        async for event in fallback_answer(self._fallback, request):
            yield event


async def fallback_answer(
    backend: AnswerBackend, request: BackendRequest, rules: tuple[str, ...] = (LLM_FALLBACK,)
) -> AsyncGenerator[AnswerEvent, None]:
    """`backend`'s answer with `rules` (`LLM_FALLBACK`) added to its
    `AnswerEnd.rules`."""
    async with aclosing(backend.answer(request)) as events:
        async for event in events:
            if isinstance(event, AnswerEnd):
                event = replace(event, rules=(*event.rules, *rules))
            yield event


async def _read(stream: AsyncIterator[Any], queue: asyncio.Queue[_Item]) -> _Item:
    """Put the stream's text pieces on `queue`; returns how the stream ended."""
    async with aclosing(cast(AsyncGenerator[Any, None], stream)) as parts:
        async for part in parts:
            await queue.put(part.message.content or "")
            if part.done:
                return _Done(complete=part.done_reason != "length")
    return _Failed("the stream ended before its final (done) object")


async def _get(queue: asyncio.Queue[_Item], timeout_s: float) -> _Item | None:
    """The next item: at once when one is queued, else within `timeout_s`, else None.
    Cancelling the wait loses no item."""
    if not queue.empty():
        return queue.get_nowait()
    if timeout_s <= 0:
        return None
    try:
        async with asyncio.timeout(timeout_s):
            return await queue.get()
    except TimeoutError:
        return None


def load_prompt() -> str:
    """The rules every LLM answer follows: `prompts/guardrail.md`."""
    return prompts.load("guardrail")


def keep_alive(value: str) -> str | float:
    """The setting as Ollama takes it: seconds as a number ("-1", "300"), else a duration."""
    return float(value) if re.fullmatch(r"-?\d+(\.\d+)?", value.strip()) else value.strip()
