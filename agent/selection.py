"""Which backend writes the answers, and why, decided once at start from `AgentSettings.backend`:

- `extractive`: never an LLM;
- `auto` (default): Ollama when it answers `/api/tags` and lists the model, otherwise
  extractive for the life of the server;
- `ollama`: Ollama; when it is not ready at start the server still starts and answers through
  the extractive fallback while `agent.standby.StandbyBackend` keeps checking.

Every choice comes with a sentence for the log and `voicedesk doctor`. Whichever backend
talks to Ollama, its failures go through one `agent.breaker.CircuitBreaker`;
`breaker_state` reads it for readiness checks and metrics.
"""

from __future__ import annotations

import asyncio
import logging

from agent.agent import KnowledgeAgent
from agent.backend import AnswerBackend
from agent.breaker import BreakerState
from agent.extractive import ExtractiveBackend
from agent.health import OllamaStatus, check_ollama, check_ollama_sync
from agent.kb import demo_kb_dir, load_kb
from agent.ollama import OllamaBackend
from agent.standby import StandbyBackend
from agent.types import AgentSettings

log = logging.getLogger(__name__)


def explain(settings: AgentSettings, status: OllamaStatus | None) -> str:
    """The sentence saying which backend `settings` get with Ollama in `status`, and why.

    `status` may be None only for `backend="extractive"` (no check is made then).
    """
    if settings.backend == "extractive" or status is None:
        return "extractive: the extractive backend was asked for (no language model)"
    if status.ready:
        return f"ollama: {settings.model} at {settings.ollama_url}"
    if settings.backend == "auto":
        return f"extractive: {status.reason}"
    return (
        f"ollama: {settings.model} at {settings.ollama_url} once it is ready; until then "
        f"extractive, because {status.reason} (checking again every {settings.health_retry_s:g} s)"
    )


def breaker_state(backend: AnswerBackend) -> BreakerState | None:
    """Whether `backend` skips the model now after failures in a row (`open`), with the
    run of failures and when it retries; None for a backend without a model (extractive)."""
    if isinstance(backend, OllamaBackend | StandbyBackend):
        return backend.breaker.state
    return None


def backend_for(settings: AgentSettings, status: OllamaStatus | None) -> AnswerBackend:
    """The backend `explain` describes."""
    if settings.backend == "extractive" or status is None:
        return ExtractiveBackend(settings)
    if settings.backend == "auto":
        return OllamaBackend(settings) if status.ready else ExtractiveBackend(settings)
    return StandbyBackend(settings, status=status)


async def choose_backend(settings: AgentSettings) -> tuple[AnswerBackend, str]:
    """Check Ollama (unless the backend is `extractive`) and pick the backend.

    Takes at most about `connect_timeout_s`; never raises for a network problem. Logs a
    warning when `ollama` was asked for and is not ready.
    """
    status = None if settings.backend == "extractive" else await check_ollama(settings)
    return _chosen(settings, status)


def choose_backend_sync(settings: AgentSettings) -> tuple[AnswerBackend, str]:
    """`choose_backend` for start-up code without an event loop, or code that may block
    the loop it runs in for `connect_timeout_s` (loading services before serving)."""
    status = None if settings.backend == "extractive" else check_ollama_sync(settings)
    return _chosen(settings, status)


def build_agent(settings: AgentSettings) -> tuple[KnowledgeAgent, str]:
    """The agent for the server: the KB loaded and the backend chosen.

    Synchronous: it blocks for up to `connect_timeout_s` while it checks Ollama, so call it
    at start, before serving. It needs no event loop, and works inside one.

    Returns:
        The agent, and the sentence saying which backend answers and why (log it).

    Raises:
        KbError: the KB is malformed.
    """
    kb = load_kb(settings.kb_dir or demo_kb_dir())
    backend, why = choose_backend_sync(settings)
    return KnowledgeAgent(settings, kb, backend=backend), why


async def build_agent_async(settings: AgentSettings) -> tuple[KnowledgeAgent, str]:
    """`build_agent` without blocking the event loop."""
    kb = await asyncio.to_thread(load_kb, settings.kb_dir or demo_kb_dir())
    backend, why = await choose_backend(settings)
    agent = await asyncio.to_thread(KnowledgeAgent, settings, kb, backend)  # embeds the KB
    return agent, why


def _chosen(settings: AgentSettings, status: OllamaStatus | None) -> tuple[AnswerBackend, str]:
    why = explain(settings, status)
    if settings.backend == "ollama" and status is not None and not status.ready:
        log.warning("answers: %s", why)
    return backend_for(settings, status), why
