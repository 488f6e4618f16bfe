"""Choosing the backend at start (auto / ollama / extractive), `--llm ollama` while Ollama is
down, its background re-checks, and `voicedesk doctor`."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from agent.agent import KnowledgeAgent
from agent.commands import doctor
from agent.extractive import ExtractiveBackend
from agent.health import check_ollama, check_ollama_sync
from agent.kb import demo_kb_dir, load_kb
from agent.ollama import LLM_FALLBACK, OllamaBackend
from agent.selection import build_agent, build_agent_async, choose_backend, choose_backend_sync
from agent.standby import StandbyBackend
from agent.types import AgentSettings, AnswerEnd
from tests.support.ollama_standin import OllamaStandIn, Script
from tests.support.servers import free_port

KB = load_kb(demo_kb_dir())
QUESTION = "my bulb is flashing red"
REPLY = "Use a 2.4 GHz network. [troubleshooting#4.2]"
FAST = AgentSettings(connect_timeout_s=1.0, health_retry_s=0.05, first_token_timeout_s=2.0)


def nowhere() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def answer_end(agent: KnowledgeAgent) -> AnswerEnd:
    events = [e async for e in agent.answer(QUESTION, ())]
    end = events[-1]
    assert isinstance(end, AnswerEnd)
    return end


async def test_the_health_check_lists_the_models() -> None:
    async with OllamaStandIn(Script(models=("phi3:mini", "llama3:8b"))) as ollama:
        status = await check_ollama(replace(FAST, ollama_url=ollama.url))
        assert status.models == ("phi3:mini", "llama3:8b") and status.ready
        assert await asyncio.to_thread(check_ollama_sync, replace(FAST, ollama_url=ollama.url))
        assert ollama.tag_requests == 2


async def test_auto_picks_ollama_when_it_answers_and_has_the_model() -> None:
    async with OllamaStandIn(Script(reply=REPLY)) as ollama:
        settings = replace(FAST, ollama_url=ollama.url)
        backend, why = await choose_backend(settings)
        assert isinstance(backend, OllamaBackend)
        assert why == f"ollama: phi3:mini at {ollama.url}"
        end = await answer_end(KnowledgeAgent(settings, KB, backend=backend))
        assert end.backend == "ollama"


async def test_auto_picks_extractive_when_the_model_is_not_pulled() -> None:
    async with OllamaStandIn(Script(models=("llama3:8b",))) as ollama:
        backend, why = await choose_backend(replace(FAST, ollama_url=ollama.url))
    assert isinstance(backend, ExtractiveBackend)
    assert why == "extractive: model phi3:mini is not pulled (ollama pull phi3:mini)"


async def test_auto_picks_extractive_when_nothing_listens() -> None:
    url = nowhere()
    backend, why = await choose_backend(replace(FAST, ollama_url=url))
    assert isinstance(backend, ExtractiveBackend)
    assert why == f"extractive: Ollama at {url} is not reachable (connection refused)"


async def test_extractive_never_asks_ollama() -> None:
    async with OllamaStandIn(Script(reply=REPLY)) as ollama:
        settings = replace(FAST, ollama_url=ollama.url, backend="extractive")
        backend, why = await choose_backend(settings)
        assert isinstance(backend, ExtractiveBackend) and why.startswith("extractive: ")
        end = await answer_end(KnowledgeAgent(settings, KB, backend=backend))
        assert end.backend == "extractive" and ollama.tag_requests == 0 and not ollama.requests


async def test_ollama_down_at_start_answers_through_the_fallback_then_switches(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    settings = replace(FAST, ollama_url=f"http://127.0.0.1:{port}", backend="ollama")
    with caplog.at_level(logging.WARNING):
        backend, why = await choose_backend(settings)
    assert isinstance(backend, StandbyBackend) and not backend.ready
    assert why.startswith(f"ollama: phi3:mini at {settings.ollama_url} once it is ready; ")
    assert "not reachable (connection refused)" in why and "every 0.05 s" in why
    assert "not reachable" in caplog.text
    agent = KnowledgeAgent(settings, KB, backend=backend)
    end = await answer_end(agent)
    assert end.backend == "extractive" and end.rules == (LLM_FALLBACK,)

    watching = asyncio.create_task(agent.watch_backend())
    try:
        async with OllamaStandIn(Script(reply=REPLY), port=port) as ollama:
            for _ in range(200):
                if backend.ready:
                    break
                await asyncio.sleep(0.01)
            assert backend.ready
            end = await answer_end(agent)
            assert end == AnswerEnd(sources=("troubleshooting#4.2",), backend="ollama")
            assert len(ollama.requests) == 1
    finally:
        watching.cancel()
        await asyncio.wait({watching})


async def test_without_the_watch_task_a_question_starts_the_recheck() -> None:
    port = free_port()
    settings = replace(FAST, ollama_url=f"http://127.0.0.1:{port}", backend="ollama")
    agent = KnowledgeAgent(settings, KB)  # default_backend: not checked yet
    backend = agent.backend
    assert isinstance(backend, StandbyBackend)
    async with OllamaStandIn(Script(reply=REPLY), port=port) as ollama:
        assert (await answer_end(agent)).backend == "extractive"  # answered before the check
        for _ in range(200):
            if backend.ready:
                break
            await asyncio.sleep(0.01)
        assert ollama.tag_requests == 1
        assert (await answer_end(agent)).backend == "ollama"
    await agent.aclose()


async def test_rechecks_wait_for_the_retry_interval() -> None:
    settings = replace(FAST, ollama_url=nowhere(), backend="ollama", health_retry_s=60.0)
    backend, _ = await choose_backend(settings)
    assert isinstance(backend, StandbyBackend)
    agent = KnowledgeAgent(settings, KB, backend=backend)
    checked = backend.status
    for _ in range(3):
        assert (await answer_end(agent)).rules == (LLM_FALLBACK,)
    await asyncio.sleep(0.05)
    assert backend.status is checked  # checked at start; the next check is a minute away
    await agent.aclose()


async def test_ollama_going_away_is_logged_by_the_watch(caplog: pytest.LogCaptureFixture) -> None:
    async with OllamaStandIn(Script(reply=REPLY)) as ollama:
        settings = replace(FAST, ollama_url=ollama.url, backend="ollama")
        backend, why = await choose_backend(settings)
        assert isinstance(backend, StandbyBackend) and backend.ready
        assert why == f"ollama: phi3:mini at {ollama.url}"
    with caplog.at_level(logging.WARNING):
        status = await backend.check()
    assert not status.ready and "not reachable (connection refused)" in caplog.text
    agent = KnowledgeAgent(settings, KB, backend=backend)
    assert (await answer_end(agent)).backend == "extractive"
    await agent.aclose()


async def test_build_agent_checks_ollama_without_an_event_loop_of_its_own() -> None:
    async with OllamaStandIn(Script(reply=REPLY)) as ollama:
        settings = replace(FAST, ollama_url=ollama.url)
        agent, why = await asyncio.to_thread(build_agent, settings)
        assert isinstance(agent.backend, OllamaBackend) and why.startswith("ollama: ")
        assert agent.kb.root == demo_kb_dir()
        assert (await answer_end(agent)).backend == "ollama"
        agent, why = await build_agent_async(settings)
        assert isinstance(agent.backend, OllamaBackend)


def test_build_agent_works_inside_a_running_loop() -> None:
    async def serve() -> tuple[KnowledgeAgent, str]:
        return build_agent(replace(FAST, ollama_url=nowhere(), backend="ollama"))

    agent, why = asyncio.run(serve())
    assert isinstance(agent.backend, StandbyBackend) and "once it is ready" in why


def test_choose_backend_sync_for_extractive_makes_no_check() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        settings = replace(FAST, backend="extractive", ollama_url=f"http://127.0.0.1:{port}")
        backend, why = choose_backend_sync(settings)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # a check would have connected, and be queued
            listener.accept()
    assert isinstance(backend, ExtractiveBackend)
    assert why == "extractive: the extractive backend was asked for (no language model)"


async def test_doctor_says_what_auto_picks_and_why() -> None:
    async with OllamaStandIn(Script(models=("phi3:mini", "llama3:8b"))) as ollama:
        out = io.StringIO()
        settings = replace(FAST, ollama_url=ollama.url)
        assert await asyncio.to_thread(doctor, settings, out) == 0
    assert out.getvalue().splitlines() == [
        f"knowledge base: {demo_kb_dir()} (the bundled demo KB): "
        f"{len(KB.passages)} passages, {len(KB.faqs)} FAQ entries",
        f"ollama: {ollama.url} answers; models pulled: phi3:mini, llama3:8b",
        "model phi3:mini: pulled",
        f"backend auto picks ollama: phi3:mini at {ollama.url}",
    ]


async def test_doctor_names_a_missing_model() -> None:
    async with OllamaStandIn(Script(models=())) as ollama:
        out = io.StringIO()
        settings = replace(FAST, ollama_url=ollama.url, backend="ollama")
        assert await asyncio.to_thread(doctor, settings, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[1:3] == [
        f"ollama: {ollama.url} answers; models pulled: none",
        "model phi3:mini: not pulled (run: ollama pull phi3:mini)",
    ]
    assert lines[3] == (
        "backend auto picks extractive: model phi3:mini is not pulled (ollama pull phi3:mini)"
    )
    assert lines[4].startswith("backend ollama (configured): ollama: phi3:mini at ")


def test_doctor_with_ollama_down() -> None:
    url = nowhere()
    out = io.StringIO()
    assert doctor(replace(FAST, ollama_url=url), out) == 0
    assert out.getvalue().splitlines()[1:] == [
        f"ollama: Ollama at {url} is not reachable (connection refused)",
        f"backend auto picks extractive: Ollama at {url} is not reachable (connection refused)",
    ]


def test_doctor_fails_on_a_broken_kb(tmp_path: Path) -> None:
    (tmp_path / "manual.md").write_text("# T\n## 1 One\ntext\n## 1 One again\nmore\n")
    out = io.StringIO()
    assert doctor(replace(FAST, kb_dir=tmp_path, ollama_url=nowhere()), out) == 1
    assert out.getvalue().startswith("knowledge base: error: ")


async def test_proxy_variables_do_not_reroute_a_local_ollama(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, nowhere())
    async with OllamaStandIn(Script(reply=REPLY)) as ollama:
        settings = replace(FAST, ollama_url=ollama.url)
        backend, why = await choose_backend(settings)
        assert why.startswith("ollama: ")
        assert (await answer_end(KnowledgeAgent(settings, KB, backend=backend))).rules == ()


async def test_while_the_watch_runs_questions_start_no_checks() -> None:
    async with OllamaStandIn(Script(models=())) as ollama:
        settings = replace(FAST, ollama_url=ollama.url, backend="ollama", health_retry_s=60.0)
        agent = KnowledgeAgent(settings, KB)
        watching = asyncio.create_task(agent.watch_backend())
        try:
            for _ in range(100):
                if ollama.tag_requests:
                    break
                await asyncio.sleep(0.01)
            for _ in range(3):
                assert (await answer_end(agent)).rules == (LLM_FALLBACK,)
            await asyncio.sleep(0.05)
            assert ollama.tag_requests == 1 and ollama.requests == []
        finally:
            watching.cancel()
            await asyncio.wait({watching})
        await agent.aclose()
