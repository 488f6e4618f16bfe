"""Is Ollama usable? One `GET /api/tags`: does the server answer, and is the model pulled.

`check_ollama` for the event loop, `check_ollama_sync` for start-up code and the
CLI; both take at most about `connect_timeout_s` and never raise for a network problem.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import ollama

from agent.types import AgentSettings

FAILURES = (ollama.ResponseError, httpx.HTTPError, ConnectionError, OSError, ValueError)
"""What the `ollama` client raises when the server is down, slow or answers nonsense."""


@dataclass(frozen=True)
class OllamaStatus:
    """The outcome of one check. Immutable."""

    url: str
    model: str
    models: tuple[str, ...] | None
    """The models the server lists (pulled), or None when it did not answer."""
    problem: str | None = None
    """Why the server did not answer, in words; None when it did."""

    @property
    def reachable(self) -> bool:
        return self.models is not None

    @property
    def ready(self) -> bool:
        """The server answers and lists the model: answers can come from it."""
        return self.models is not None and model_listed(self.model, self.models)

    @property
    def reason(self) -> str:
        """Why it is (not) ready, as a sentence for a log line or `voicedesk doctor`."""
        if self.models is None:
            return self.problem or f"Ollama at {self.url} is not reachable"
        if not self.ready:
            return f"model {self.model} is not pulled (ollama pull {self.model})"
        return f"{self.model} at {self.url}"


def model_listed(model: str, names: Iterable[str]) -> bool:
    """True when `model` is among `names`; a name without a tag means `:latest`."""

    def full(name: str) -> str:
        return name if ":" in name else f"{name}:latest"

    return full(model) in {full(n) for n in names}


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One SSL context for every client: building one takes ~15 ms of CPU."""
    return httpx.create_ssl_context()


def client_options(settings: AgentSettings, total_s: float) -> dict[str, Any]:
    """Keyword arguments for `ollama.Client` / `ollama.AsyncClient`: the URL, `total_s`
    to read and write, `connect_timeout_s` to connect, the shared SSL context, and no proxy
    from the environment (`HTTP_PROXY` would otherwise also route `127.0.0.1` through it)."""
    return {
        "host": settings.ollama_url,
        "timeout": httpx.Timeout(total_s, connect=settings.connect_timeout_s),
        "verify": ssl_context(),
        "trust_env": False,
    }


async def check_ollama(settings: AgentSettings) -> OllamaStatus:
    """Ask `settings.ollama_url` for its models, within `connect_timeout_s` (each phase)."""
    try:
        async with ollama.AsyncClient(**client_options(settings, settings.connect_timeout_s)) as c:
            listed = await c.list()
    except FAILURES as err:
        return _down(settings, err)
    return _up(settings, listed)


def check_ollama_sync(settings: AgentSettings) -> OllamaStatus:
    """`check_ollama` for code without an event loop (it blocks the calling thread)."""
    try:
        with ollama.Client(**client_options(settings, settings.connect_timeout_s)) as client:
            listed = client.list()
    except FAILURES as err:
        return _down(settings, err)
    return _up(settings, listed)


def _up(settings: AgentSettings, listed: ollama.ListResponse) -> OllamaStatus:
    names = tuple(m.model for m in listed.models if m.model)
    return OllamaStatus(settings.ollama_url, settings.model, names)


def _down(settings: AgentSettings, err: BaseException) -> OllamaStatus:
    return OllamaStatus(settings.ollama_url, settings.model, None, describe_error(err, settings))


def describe_error(err: BaseException, settings: AgentSettings) -> str:
    """A failure talking to Ollama, in words for a log line or `voicedesk doctor`."""
    url = settings.ollama_url
    if isinstance(err, ollama.ResponseError):
        if err.status_code == 404 and "not found" in str(err.error):
            return f"model {settings.model} is not pulled (ollama pull {settings.model})"
        return f"Ollama at {url} answered HTTP {err.status_code}: {err.error}"
    # The client turns a refused connection into a bare ConnectionError; its context says more.
    cause = err.__context__ if isinstance(err, ConnectionError) and err.__context__ else err
    text = str(cause) or type(cause).__name__
    if isinstance(cause, httpx.ConnectTimeout):
        waited = settings.connect_timeout_s
        return f"Ollama at {url} is not reachable (no connection within {waited} s)"
    if isinstance(cause, httpx.ConnectError | ConnectionError):
        detail = "connection refused" if _refused(cause) else text
        return f"Ollama at {url} is not reachable ({detail})"
    if isinstance(cause, httpx.TimeoutException):
        return f"Ollama at {url} did not answer in time ({type(cause).__name__})"
    if isinstance(cause, httpx.RemoteProtocolError):
        return f"the connection to Ollama was cut ({text})"
    return f"{type(cause).__name__}: {text}"


def _refused(err: BaseException) -> bool:
    """True when a ConnectionRefusedError is in the chain (httpx says "All connection
    attempts failed" and keeps the refusal as the cause)."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False
