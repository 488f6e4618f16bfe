"""A scriptable stand-in for an Ollama server, on a loopback port, in the test's event loop.

It speaks the part of Ollama's documented HTTP API that voicedesk uses:

- `GET /api/tags`: ``{"models": [{"name", "model", "modified_at", "size", "digest",
  "details"}]}`` for the models in the script;
- `POST /api/chat` with `"stream": true`: NDJSON lines ``{"model", "created_at",
  "message": {"role": "assistant", "content": ...}, "done": false}``, one per word, then the
  final object with `"done": true`, `done_reason` and the timing fields (nanoseconds);
- `404 {"error": "model \\"x\\" not found, try pulling it first"}` for a model it lacks.

The script sets the reply (text, or a function of the request body), the delays, an error
status, a cut (the connection closed before the final object) or a hang. Every chat request
body is recorded, and so is a client that went away mid-answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Reply = str | Callable[[dict[str, Any]], str]


@dataclass
class Script:
    """How the stand-in behaves; change the fields between requests as a test goes."""

    reply: Reply = "The bulb flashes red when Wi-Fi fails. [troubleshooting#4.2]"
    models: tuple[str, ...] = ("phi3:mini",)
    first_chunk_s: float = 0.0
    """Delay after the response headers, before the first chunk."""
    chunk_s: float = 0.0
    """Delay between chunks."""
    stall_after: int | None = None
    """Pause `stall_s` before this chunk (0-based), as a model that stalls mid-answer."""
    stall_s: float = 0.0
    status: int | None = None
    """Answer `/api/chat` with this HTTP error status instead (e.g. 503)."""
    cut_after: int | None = None
    """Close the connection after this many chunks, without the final `done` object."""
    cut: Literal["abort", "eof"] = "abort"
    """`abort`: drop the connection mid-body; `eof`: end the body cleanly without `done`."""
    hang: bool = False
    """Accept `/api/chat` and never answer (until the stand-in closes)."""
    gather: int = 0
    """Hold each `/api/chat` request until this many have come (10 s at most), then answer
    them all: requests that really overlap, however slowly a loaded machine sends them."""
    done_reason: str = "stop"


@dataclass
class OllamaStandIn:
    """`async with OllamaStandIn(Script(...)) as ollama:` then use `ollama.url`."""

    script: Script = field(default_factory=Script)
    port: int = 0
    """0 picks a free port; give one (`tests.support.servers.free_port`) to come up where a
    client waits."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Bodies of the `/api/chat` requests, in order."""
    tag_requests: int = 0
    gone: int = 0
    """Chat requests whose client disconnected before the answer was complete."""
    asked: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    """Set when a chat request arrives."""
    _runner: web.AppRunner | None = field(default=None, init=False)
    _release: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/tags", self._tags)
        app.router.add_post("/api/chat", self._chat)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OllamaStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _tags(self, request: web.Request) -> web.Response:
        self.tag_requests += 1
        return web.json_response({"models": [_model_entry(name) for name in self.script.models]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.asked.set()
        script = self.script
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while len(self.requests) < script.gather:  # noqa: ASYNC110 (a few ms, a test's)
                    await asyncio.sleep(0.01)
        if script.hang:
            await self._release.wait()
            return web.Response(status=500)
        if script.status is not None:
            return web.json_response({"error": "server busy, try again"}, status=script.status)
        if not _has(script.models, body.get("model", "")):
            error = f'model "{body.get("model")}" not found, try pulling it first'
            return web.json_response({"error": error}, status=404)
        text = script.reply(body) if callable(script.reply) else script.reply
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await self._stream(request, response, body["model"], text)
        except ConnectionError:  # the client went away: nothing more to send
            self.gone += 1
        except asyncio.CancelledError:
            self.gone += 1
            raise
        return response

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, model: str, text: str
    ) -> None:
        script = self.script
        started = time.monotonic_ns()
        await asyncio.sleep(script.first_chunk_s)
        pieces = re.findall(r"\s*\S+", text) or [""]
        for index, piece in enumerate(pieces):
            if index == script.cut_after:
                await self._cut(request, response)
                return
            if index:
                await asyncio.sleep(script.chunk_s)
            if index == script.stall_after:
                await asyncio.sleep(script.stall_s)
            chunk = {"role": "assistant", "content": piece}
            await _write(response, {**_head(model), "message": chunk, "done": False})
        elapsed = time.monotonic_ns() - started
        await _write(response, _final(model, script.done_reason, elapsed, len(pieces)))
        await response.write_eof()

    async def _cut(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.script.cut == "eof":
            await response.write_eof()
            return
        transport = request.transport
        if transport is not None:
            transport.abort()


def _has(models: tuple[str, ...], name: str) -> bool:
    def full(n: str) -> str:
        return n if ":" in n else f"{n}:latest"

    return full(name) in {full(m) for m in models}


def _head(model: str) -> dict[str, Any]:
    return {"model": model, "created_at": "2024-06-01T12:00:00.000000Z"}


def _final(model: str, reason: str, elapsed_ns: int, count: int) -> dict[str, Any]:
    return {
        **_head(model),
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": reason,
        "total_duration": elapsed_ns + 1_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": 412,
        "prompt_eval_duration": 50_000_000,
        "eval_count": count,
        "eval_duration": elapsed_ns,
    }


def _model_entry(name: str) -> dict[str, Any]:
    family = name.split(":")[0]
    return {
        "name": name,
        "model": name,
        "modified_at": "2024-06-01T12:00:00.000000Z",
        "size": 2_176_178_913,
        "digest": "a2c89ceaed85371d0b8a2b4c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "3.8B",
            "quantization_level": "Q4_0",
        },
    }


async def _write(response: web.StreamResponse, line: dict[str, Any]) -> None:
    await response.write(json.dumps(line).encode() + b"\n")
