"""Ollama failing again and again, through the real `ollama` client against the stand-in: every
kind of failure falls back at once or within its timeout, three in a row open the breaker (the
next question never reaches Ollama), and after `breaker_open_s` the next one tries again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from agent.agent import KnowledgeAgent
from agent.breaker import CircuitBreaker
from agent.kb import demo_kb_dir, load_kb
from agent.ollama import LLM_FALLBACK, LLM_SKIPPED, OllamaBackend
from agent.selection import breaker_state, choose_backend
from agent.standby import StandbyBackend
from agent.types import AgentSettings, AnswerEnd, AnswerText
from tests.agent.test_ollama import ANSWER, EXTRACTIVE_START, QUESTION, Heard, ask, chat_tasks
from tests.support.fakes import Clock
from tests.support.ollama_standin import OllamaStandIn, Script
from tests.support.servers import free_port

KB = load_kb(demo_kb_dir())
SETTINGS = AgentSettings(
    first_token_ack_s=0.2,
    first_token_timeout_s=0.5,
    stall_timeout_s=0.3,
    total_timeout_s=3.0,
    breaker_failures=3,
    breaker_open_s=0.5,
)
APOLOGY = SETTINGS.llm_failure_message

FAULTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (changes to the stand-in's script, changes to the settings)
    "HTTP 503": ({"status": 503}, {}),
    "HTTP 500": ({"status": 500}, {}),
    "model not pulled": ({"models": ("llama3:8b",)}, {}),
    "hang": ({"hang": True}, {}),
    "cut before the first sentence": ({"cut_after": 3}, {}),
    "cut mid-answer": ({"cut_after": 12}, {}),
    "ended without done": ({"cut_after": 3, "cut": "eof"}, {}),
    "stall": ({"stall_after": 8, "stall_s": 2.0}, {}),
    "empty reply": ({"reply": "[troubleshooting#4.2]"}, {}),
    # The first sentence at 0.6 s, well before the timeout; the answer would end at 2.8 s.
    "total timeout": ({"chunk_s": 0.1}, {"total_timeout_s": 2.0}),
}
SAID_BEFORE_FAILING = {"cut mid-answer", "stall", "total timeout"}
"""Faults that come after the first sentence was spoken: the apology and a handoff."""


def agent_for(url: str, clock: Clock | None = None, **changes: Any) -> KnowledgeAgent:
    """An agent whose breaker runs on `clock`, moved by hand (`clock.now += ...`): its open
    time never runs out while a loaded machine is slow to answer the skipped questions."""
    settings = replace(SETTINGS, ollama_url=url, **changes)
    breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_open_s, clock or Clock())
    return KnowledgeAgent(settings, KB, backend=OllamaBackend(settings, breaker=breaker))


def backend_of(agent: KnowledgeAgent) -> OllamaBackend:
    assert isinstance(agent.backend, OllamaBackend)
    return agent.backend


def assert_fell_back(heard: Heard, said_first: bool = False) -> None:
    text = heard.text.replace(SETTINGS.ack_message + " ", "")
    if said_first:
        assert text.endswith(APOLOGY) and not text.startswith(APOLOGY)
        assert heard.end == AnswerEnd(handoff=True, rules=(LLM_FALLBACK,), backend="ollama")
    else:
        assert text.startswith(EXTRACTIVE_START)
        assert heard.end.backend == "extractive" and heard.end.rules == (LLM_FALLBACK,)


def assert_skipped(heard: Heard) -> None:
    assert heard.text.startswith(EXTRACTIVE_START)  # no acknowledgement: nothing to wait for
    assert heard.end.backend == "extractive" and not heard.end.handoff
    assert heard.end.rules == (LLM_FALLBACK, LLM_SKIPPED)


@pytest.mark.parametrize("fault", FAULTS)
async def test_three_failures_open_the_breaker_and_the_fourth_question_skips_ollama(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    script, settings = FAULTS[fault]
    clock = Clock()
    async with OllamaStandIn(replace(Script(reply=ANSWER), **script)) as ollama:
        agent = agent_for(ollama.url, clock, **settings)
        breaker = backend_of(agent).breaker
        for asked in range(1, 4):
            assert_fell_back(await ask(agent), said_first=fault in SAID_BEFORE_FAILING)
            assert len(ollama.requests) == asked
            assert breaker.state.failures_in_a_row == asked
        assert breaker.state.open
        assert "3 failures in a row" in caplog.text

        with caplog.at_level(logging.INFO):
            assert_skipped(await ask(agent))
            assert_skipped(await ask(agent))
        assert len(ollama.requests) == 3  # the skipped questions never reached Ollama
        assert "ollama skipped: 3 failures in a row, retrying in 0." in caplog.text
        assert chat_tasks() == []

        clock.now += SETTINGS.breaker_open_s
        ollama.script = Script(reply=ANSWER)  # Ollama is back
        heard = await ask(agent)
        assert len(ollama.requests) == 4
        assert heard.end == AnswerEnd(sources=("troubleshooting#4.2",), backend="ollama")
        assert not breaker.state.open and breaker.state.failures_in_a_row == 0


async def test_refused_connections_open_it_and_skipped_questions_open_no_connection() -> None:
    port, clock = free_port(), Clock()
    # The acknowledgement and the timeouts far off: a refusal falls back before any of them.
    slow = {"first_token_ack_s": 5.0, "first_token_timeout_s": 10.0, "connect_timeout_s": 10.0}
    agent = agent_for(f"http://127.0.0.1:{port}", clock, **slow)
    for _ in range(3):
        heard = await ask(agent)
        assert_fell_back(heard)
        assert not any(t.filler for t in heard.texts)  # refused: at once, no acknowledgement
        assert heard.events[-1][0] < 2.5
    assert backend_of(agent).breaker.state.open
    async with OllamaStandIn(Script(reply=ANSWER), port=port) as ollama:
        assert_skipped(await ask(agent))
        assert ollama.requests == []
        clock.now += SETTINGS.breaker_open_s
        assert (await ask(agent)).end.backend == "ollama"
        assert len(ollama.requests) == 1


async def test_a_failed_retry_skips_ollama_for_another_open_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    async with OllamaStandIn(Script(status=503)) as ollama:
        agent = agent_for(ollama.url, clock)
        for _ in range(3):
            await ask(agent)
        clock.now += SETTINGS.breaker_open_s
        with caplog.at_level(logging.WARNING):
            assert_fell_back(await ask(agent))  # the trial: Ollama asked, still 503
        assert len(ollama.requests) == 4
        assert "still failing (Ollama at" in caplog.text
        state = backend_of(agent).breaker.state
        assert state.open and state.failures_in_a_row == 4
        assert state.retry_in_s == pytest.approx(SETTINGS.breaker_open_s)  # another open_s
        assert_skipped(await ask(agent))
        assert len(ollama.requests) == 4


async def test_a_success_ends_the_run_of_failures() -> None:
    async with OllamaStandIn(Script(status=503)) as ollama:
        agent = agent_for(ollama.url)
        await ask(agent)
        await ask(agent)
        ollama.script = Script(reply=ANSWER)
        assert (await ask(agent)).end.backend == "ollama"
        ollama.script = Script(status=503)
        await ask(agent)
        await ask(agent)
        assert not backend_of(agent).breaker.state.open
        assert len(ollama.requests) == 5


async def test_a_handoff_from_the_model_is_a_success() -> None:
    async with OllamaStandIn(Script(status=503)) as ollama:
        agent = agent_for(ollama.url)
        await ask(agent)
        await ask(agent)
        ollama.script = Script(reply="HANDOFF")
        assert (await ask(agent)).end.handoff
        assert backend_of(agent).breaker.state.failures_in_a_row == 0


async def listen_then_hang_up(agent: KnowledgeAgent, events: int) -> None:
    """A caller who barges in after `events` events of the answer."""
    stream = agent.answer(QUESTION, ())
    for _ in range(events):
        await anext(stream)
    await stream.aclose()


async def test_barge_in_is_not_a_failure() -> None:
    async with OllamaStandIn(Script(status=503)) as ollama:
        agent = agent_for(ollama.url)
        await ask(agent)
        await ask(agent)
        ollama.script = Script(reply=ANSWER, chunk_s=0.05)
        await listen_then_hang_up(agent, 1)  # during the model's answer
        ollama.script = Script(reply=ANSWER, hang=True)
        await listen_then_hang_up(agent, 1)  # during the acknowledgement
        state = backend_of(agent).breaker.state
        assert not state.open and state.failures_in_a_row == 2
        assert len(ollama.requests) == 4


async def test_barge_in_on_the_retry_leaves_the_next_question_to_retry() -> None:
    clock = Clock()
    async with OllamaStandIn(Script(status=503)) as ollama:
        agent = agent_for(ollama.url, clock)
        for _ in range(3):
            await ask(agent)
        clock.now += SETTINGS.breaker_open_s
        ollama.script = Script(reply=ANSWER, hang=True)
        await listen_then_hang_up(agent, 1)  # the retry, interrupted during the acknowledgement
        assert len(ollama.requests) == 4
        ollama.script = Script(reply=ANSWER)
        assert (await ask(agent)).end.backend == "ollama"
        assert len(ollama.requests) == 5
        assert not backend_of(agent).breaker.state.open


async def test_questions_during_the_retry_skip_ollama() -> None:
    clock = Clock()
    async with OllamaStandIn(Script(status=503)) as ollama:
        # The retry's model answers in 2 s, inside its timeouts: the time a loaded machine has
        # to answer the second caller while the retry is with Ollama.
        slow = {"first_token_ack_s": 5.0, "first_token_timeout_s": 10.0}
        agent = agent_for(ollama.url, clock, **slow)
        for _ in range(3):
            await ask(agent)
        clock.now += SETTINGS.breaker_open_s
        ollama.script = Script(reply=ANSWER, first_chunk_s=2.0)
        ollama.asked.clear()  # set by the failed requests; wait for the retry's own
        retry = asyncio.create_task(ask(agent))
        await asyncio.wait_for(ollama.asked.wait(), 10)
        assert backend_of(agent).breaker.state.trial
        assert_skipped(await ask(agent))  # a second caller while the retry is with Ollama
        assert (await retry).end.backend == "ollama"
        assert len(ollama.requests) == 4


async def test_concurrent_calls_share_one_breaker() -> None:
    async with OllamaStandIn(Script(status=503, gather=5)) as ollama:
        agent = agent_for(ollama.url)
        results = await asyncio.gather(*(ask(agent) for _ in range(5)))
        assert all(r.end.rules == (LLM_FALLBACK,) for r in results)
        state = backend_of(agent).breaker.state
        assert state.open and state.failures_in_a_row == 5
        assert_skipped(await ask(agent))
        assert len(ollama.requests) == 5


async def test_the_standby_backend_answers_through_the_breaker() -> None:
    async with OllamaStandIn(Script(reply=ANSWER)) as ollama:
        # Open for a minute: it stays open however long the checks below take.
        settings = replace(SETTINGS, ollama_url=ollama.url, backend="ollama", breaker_open_s=60.0)
        backend, _ = await choose_backend(settings)
        assert isinstance(backend, StandbyBackend) and backend.ready
        agent = KnowledgeAgent(settings, KB, backend=backend)
        ollama.script.status = 503  # /api/tags still answers: the health check cannot tell
        for _ in range(3):
            assert_fell_back(await ask(agent))
        state = breaker_state(backend)
        assert state is not None and state.open and state.failures_in_a_row == 3
        assert await backend.check() and backend.ready  # a passing check does not close it
        assert_skipped(await ask(agent))
        assert len(ollama.requests) == 3
        await agent.aclose()


async def test_auto_answers_through_the_breaker_and_extractive_has_none() -> None:
    async with OllamaStandIn(Script(reply=ANSWER)) as ollama:
        settings = replace(SETTINGS, ollama_url=ollama.url)
        backend, _ = await choose_backend(settings)
        assert isinstance(backend, OllamaBackend)
        assert breaker_state(backend) == backend.breaker.state
        extractive, _ = await choose_backend(replace(settings, backend="extractive"))
        assert breaker_state(extractive) is None


async def test_breaker_failures_zero_never_skips() -> None:
    async with OllamaStandIn(Script(status=503)) as ollama:
        agent = agent_for(ollama.url, breaker_failures=0)
        for _ in range(5):
            assert_fell_back(await ask(agent))
        assert len(ollama.requests) == 5


# ---------------------------------------------------------------- the defaults' time budget


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A loopback URL whose port never completes a connection: its accept queue is full, so
    new connection attempts are dropped as by a firewall that drops packets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(server.getsockname())
            fillers.append(filler)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def test_a_black_holed_host_falls_back_at_the_first_token_timeout() -> None:
    with black_hole() as url:
        agent = agent_for(url, connect_timeout_s=10.0, total_timeout_s=20.0)
        heard = await ask(agent)
    assert_fell_back(heard)
    fallback_at = next(
        when for when, e in heard.events if isinstance(e, AnswerText) and not e.filler
    )
    assert 0.45 < fallback_at < 5.0  # first_token_timeout_s (0.5 s), not the 10 s connect timeout


def test_the_defaults_fit_a_three_second_budget() -> None:
    """What a hung Ollama costs after the transcript: the acknowledgement before the timeout,
    the fallback at the timeout, and neither the connection nor the first token waits longer.
    bench/ollama_faults.py measures the whole budget from the end of speech."""
    s = AgentSettings()
    assert s.first_token_ack_s < s.first_token_timeout_s <= 2.0
    assert s.connect_timeout_s <= s.first_token_timeout_s
    assert (s.breaker_failures, s.breaker_open_s) == (3, 30.0)


@pytest.mark.parametrize("fault", ["hang", "black hole"])
async def test_with_the_defaults_a_hung_ollama_is_acknowledged_then_falls_back_in_2_s(
    fault: str,
) -> None:
    async with OllamaStandIn(Script(reply=ANSWER, hang=True)) as ollama:
        with black_hole() as nowhere:
            url = ollama.url if fault == "hang" else nowhere
            settings = AgentSettings(ollama_url=url)
            agent = KnowledgeAgent(settings, KB, backend=OllamaBackend(settings))
            heard = await ask(agent)
    (ack_at, ack), (fallback_at, fallback) = heard.events[0], heard.events[1]
    assert ack == AnswerText("Let me check that for you. ", filler=True)
    assert 0.75 < ack_at < 1.8  # first_token_ack_s (0.8 s), well before the timeout
    assert isinstance(fallback, AnswerText) and fallback.text.startswith(EXTRACTIVE_START)
    # first_token_timeout_s (2 s): not the connection's timeout and then the first token's (4 s)
    assert 1.95 < fallback_at < 3.8
    assert heard.end.rules == (LLM_FALLBACK,)
