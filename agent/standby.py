"""`--llm ollama` when Ollama may not be up yet: answer without it, and keep checking.

`StandbyBackend` answers through Ollama while its last health check passed, and through
the extractive backend (recording `llm_fallback`) until then. It checks again in the
background: every `health_retry_s` while `StandbyBackend.watch` runs (the server can run
it as a task), and otherwise at most that often when a question comes in while it is down.

While ready, answers go through `agent.ollama.OllamaBackend` and so through its
breaker: a model that keeps failing (503, hanging) although `/api/tags` answers is skipped
for `breaker_open_s` after `breaker_failures` failures in a row. A health check neither
opens nor closes the breaker: the server listing its models says nothing about its answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from agent.backend import AnswerBackend, BackendRequest
from agent.breaker import CircuitBreaker
from agent.extractive import ExtractiveBackend
from agent.health import OllamaStatus, check_ollama
from agent.ollama import OllamaBackend, fallback_answer
from agent.types import AgentSettings, AnswerEvent

log = logging.getLogger(__name__)


class StandbyBackend:
    """Ollama when it is ready, the fallback meanwhile. One instance serves every call."""

    name = "ollama"

    def __init__(
        self,
        settings: AgentSettings,
        status: OllamaStatus | None = None,
        fallback: AnswerBackend | None = None,
    ) -> None:
        """
        Args:
            settings: as for `agent.ollama.OllamaBackend`, plus `health_retry_s`.
            status: a check made at start; None means not checked yet (the first question
                starts a check and is answered by the fallback).
            fallback: answers while Ollama is not ready; the extractive backend by default.
        """
        self._settings = settings
        self._fallback = fallback if fallback is not None else ExtractiveBackend(settings)
        self.ollama = OllamaBackend(settings, fallback=self._fallback)
        self.status = status
        """The last check's outcome."""
        self._checked_at = -math.inf if status is None else _now()
        self._checking: asyncio.Task[OllamaStatus] | None = None
        self._watching = 0

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker of the Ollama backend it answers through when ready."""
        return self.ollama.breaker

    @property
    def ready(self) -> bool:
        """True when the last check found the server up and the model pulled."""
        return self.status is not None and self.status.ready

    async def answer(self, request: BackendRequest) -> AsyncGenerator[AnswerEvent, None]:
        """Ollama's answer when ready, else the fallback's (with `llm_fallback`)."""
        if self.ready:
            events = self.ollama.answer(request)
        else:
            self._check_soon()
            events = fallback_answer(self._fallback, request)
        async with aclosing(events):
            async for event in events:
                yield event

    async def check(self) -> OllamaStatus:
        """Check Ollama now (within `connect_timeout_s`) and log when readiness changes."""
        status = await check_ollama(self._settings)
        was = self.status
        self.status, self._checked_at = status, _now()
        if status.ready and (was is None or not was.ready):
            log.info("ollama: %s is ready; answers come from the model", status.reason)
        elif not status.ready and (was is None or was.ready or was.reason != status.reason):
            log.warning(
                "ollama: %s; the extractive backend answers meanwhile (checking every %g s)",
                status.reason,
                self._settings.health_retry_s,
            )
        return status

    async def watch(self) -> None:
        """Check every `health_retry_s` until cancelled (questions then start no checks of
        their own). Cancelling it is safe."""
        self._watching += 1
        try:
            while True:
                await self.check()
                await asyncio.sleep(self._settings.health_retry_s)
        finally:
            self._watching -= 1

    async def aclose(self) -> None:
        """Stop a check started by a question, if one is running."""
        if self._checking is not None:
            self._checking.cancel()
            await asyncio.wait({self._checking})
            self._checking = None

    def _check_soon(self) -> None:
        """Start a background check unless one runs or the last is under `health_retry_s`
        old; the question itself does not wait for it."""
        if self._watching or (self._checking is not None and not self._checking.done()):
            return
        if _now() - self._checked_at < self._settings.health_retry_s:
            return
        self._checked_at = _now()
        self._checking = asyncio.create_task(self.check(), name="ollama-health-check")


def _now() -> float:
    return time.monotonic()
