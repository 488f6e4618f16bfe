"""The HTTP and websocket server: `/call` for callers, `/healthz`; thin I/O around CallSession."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from voice import chat, console, protocol
from voice.config import Settings
from voice.office import OFFICE, Office
from voice.protocol import ProtocolError
from voice.records import Channel
from voice.services import Services
from voice.session import CallSession
from voice.transport import CallClosed

log = logging.getLogger(__name__)

HARD_MESSAGE_LIMIT = 1 << 20
"""Messages over this are cut off by the websocket layer itself (close 1009, no error event)."""

SERVICES = web.AppKey("services", Services)
CALLS = web.AppKey("calls", set[web.WebSocketResponse])
CHAT_MEMORY = web.AppKey("chat_memory", chat.ChatMemory)
BACKGROUND = web.AppKey("background", list[asyncio.Task[None]])


class WebSocketTransport:
    """Sends to one caller; a caller that takes nothing for `send_timeout_s` is closed (4409)."""

    def __init__(self, ws: web.WebSocketResponse, send_timeout_s: float) -> None:
        self.ws = ws
        self._timeout = send_timeout_s
        self.closed_code: int | None = None
        self.stalled = asyncio.Event()
        """Set when the caller stopped reading; the call is to be closed."""
        self._pending: set[asyncio.Future[None]] = set()

    async def send_text(self, text: str) -> None:
        self._check_open()
        await self._send(self.ws.send_str(text))

    async def send_bytes(self, data: bytes) -> None:
        self._check_open()
        await self._send(self.ws.send_bytes(data))

    def _check_open(self) -> None:
        if self.closed_code is not None or self.ws.closed:
            raise CallClosed()

    async def _send(self, sending: Coroutine[Any, Any, None]) -> None:
        # The send is shielded: cancelling a task that waits in aiohttp's drain cancels the
        # shared drain future, and every later send on the connection would then fail at once.
        # A send abandoned by barge-in has written its frame already; only the drain is left.
        task = asyncio.ensure_future(sending)
        self._pending.add(task)
        task.add_done_callback(self._settled)
        try:
            await asyncio.wait_for(asyncio.shield(task), self._timeout)
        except TimeoutError:
            log.warning("caller stopped reading for %g s; closing the call", self._timeout)
            self.closed_code = protocol.CLOSE_NOT_READING
            self.stalled.set()
            raise CallClosed() from None
        except (ConnectionError, RuntimeError) as err:
            raise CallClosed() from err

    def _settled(self, task: asyncio.Future[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed send is reported through the awaiting caller

    def abandon(self) -> None:
        """Cancel sends still waiting for a caller that will never drain them."""
        for task in list(self._pending):
            task.cancel()


@dataclass
class _Ending:
    reason: str = "hangup"
    close_code: int = protocol.CLOSE_NORMAL
    error: ProtocolError | None = None


async def call_handler(request: web.Request) -> web.WebSocketResponse:
    services = request.app[SERVICES]
    settings = services.settings
    ws = web.WebSocketResponse(max_msg_size=HARD_MESSAGE_LIMIT, heartbeat=20.0)
    await ws.prepare(request)
    call_id = uuid.uuid4().hex[:12]
    transport = WebSocketTransport(ws, settings.call.send_timeout_s)
    request.app[CALLS].add(ws)
    try:
        try:
            start = await _receive_start(ws, services)
        except ProtocolError as err:
            log.info("call %s refused: %s", call_id, err.code)
            ending = _Ending("error", err.close_code or protocol.CLOSE_BAD_START, err)
        else:
            log.info(
                "call %s started (%s %d Hz)", call_id, start.audio.encoding, start.audio.sample_rate
            )
            ending = await _run_call(ws, call_id, start, request.app, transport)
    finally:
        request.app[CALLS].discard(ws)
    await _close(ws, transport, ending)
    log.info("call %s ended: %s", call_id, ending.reason)
    return ws


async def _run_call(
    ws: web.WebSocketResponse,
    call_id: str,
    start: protocol.Start,
    app: web.Application,
    transport: WebSocketTransport,
) -> _Ending:
    """Serve one started call until it ends, watched by the back office; returns how it ended."""
    services, office = app[SERVICES], app[OFFICE]
    channel: Channel = "kiosk" if start.metadata.get("channel") == "kiosk" else "call"
    monitor = office.monitor(
        call_id, channel, start.caller_id, start.metadata, start.audio.sample_rate
    )
    monitor.started()
    session = CallSession(services, start, transport, observer=monitor)
    office.calls[call_id] = session
    reason = "server_shutdown"
    try:
        ending = await _serve_session(ws, call_id, start, services, session, transport)
        reason = ending.reason
        return ending
    finally:
        office.calls.pop(call_id, None)
        monitor.ended(reason)


async def _serve_session(
    ws: web.WebSocketResponse,
    call_id: str,
    start: protocol.Start,
    services: Services,
    session: CallSession,
    transport: WebSocketTransport,
) -> _Ending:
    ending = _Ending()
    listener = asyncio.create_task(session.listen())
    receiver = asyncio.create_task(_receive_loop(ws, session, services.settings, transport, ending))
    stalled = asyncio.create_task(transport.stalled.wait())
    try:
        await transport.send_text(
            protocol.encode(
                protocol.Ready(
                    call_id=call_id,
                    version=protocol.VERSION,
                    audio={
                        "encoding": start.audio.encoding,
                        "sample_rate": start.audio.sample_rate,
                    },
                )
            )
        )
        await asyncio.wait({listener, receiver, stalled}, return_when=asyncio.FIRST_COMPLETED)
    except CallClosed:
        pass
    finally:
        for task in (listener, receiver, stalled):
            task.cancel()
        await asyncio.gather(listener, receiver, stalled, return_exceptions=True)
        await session.close()
    if stalled.done() and not stalled.cancelled():
        return _Ending("not_reading", protocol.CLOSE_NOT_READING)
    for task in (listener, receiver):
        failure = None if task.cancelled() else task.exception()
        if failure is not None and not isinstance(failure, CallClosed):
            log.error("call %s failed: %r", call_id, failure)
            return _Ending("error", protocol.CLOSE_INTERNAL)
    return ending


async def _receive_start(ws: web.WebSocketResponse, services: Services) -> protocol.Start:
    """The start message, within `start_timeout_s` overall (pings do not extend it)."""
    timeout_s = services.settings.call.start_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            message = await ws.receive()
    except TimeoutError:
        raise ProtocolError(
            "start_timeout",
            f"No start message within {timeout_s:g} s.",
            protocol.CLOSE_START_TIMEOUT,
        ) from None
    if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        raise ProtocolError(
            "bad_start", "The call closed before it started.", protocol.CLOSE_BAD_START
        )
    start = protocol.parse_start(message.data)
    language = start.language
    if language is not None and not services.transcriber.supports(language):
        raise ProtocolError(
            "unsupported_language",
            f"This server does not recognize the language {language!r}.",
            protocol.CLOSE_BAD_START,
        )
    return start


async def _receive_loop(
    ws: web.WebSocketResponse,
    session: CallSession,
    settings: Settings,
    transport: WebSocketTransport,
    ending: _Ending,
) -> None:
    """Read caller messages until hang-up, close, or a fatal error (recorded in `ending`)."""
    limits = settings.call
    async for message in ws:
        try:
            if message.type == WSMsgType.BINARY:
                if len(message.data) > limits.max_frame_bytes:
                    raise ProtocolError(
                        "frame_too_big",
                        f"Frames may be at most {limits.max_frame_bytes} bytes.",
                        protocol.CLOSE_TOO_BIG,
                    )
                protocol.check_audio_frame(message.data, session.audio_format, limits.max_frame_ms)
                await session.on_audio(message.data)
            elif message.type == WSMsgType.TEXT:
                parsed = protocol.parse_message(message.data)
                if isinstance(parsed, protocol.HangUp):
                    return
                await session.on_text(parsed.text)
        except ProtocolError as err:
            if err.close_code is not None:
                ending.reason, ending.close_code, ending.error = "error", err.close_code, err
                return
            await transport.send_text(
                protocol.encode(protocol.Error(code=err.code, message=err.message))
            )
    ending.reason = "disconnected"


async def _close(ws: web.WebSocketResponse, transport: WebSocketTransport, ending: _Ending) -> None:
    if ws.closed:
        return
    if transport.closed_code is not None:
        # The caller reads nothing: try the close frame briefly, then drop the connection.
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            await asyncio.wait_for(ws.close(code=transport.closed_code), 1)
        if ws._req is not None and ws._req.transport is not None:
            ws._req.transport.abort()
        transport.abandon()
        return
    with contextlib.suppress(CallClosed, ConnectionError, RuntimeError):
        if ending.error is not None:
            error = protocol.Error(code=ending.error.code, message=ending.error.message, fatal=True)
            await transport.send_text(protocol.encode(error))
        await transport.send_text(protocol.encode(protocol.End(reason=ending.reason)))
    with contextlib.suppress(ConnectionError, RuntimeError):
        await asyncio.wait_for(ws.close(code=ending.close_code), 5)


async def chat_handler(request: web.Request) -> web.Response:
    """`POST /api/chat`: {"message", "session_id"?} → {"reply", "sources", "handoff", ...}."""
    services = request.app[SERVICES]
    try:
        message, session_id = chat.parse_request(await request.read())
    except chat.ChatError as err:
        return chat.error_response(err)
    asked_at = time.time()
    session_id = session_id or chat.new_session_id()
    result = await chat.answer(
        services.agent,
        request.app[CHAT_MEMORY],
        message,
        session_id,
        services.settings.agent.memory_turns,
    )
    request.app[OFFICE].record_text_turn(session_id, message, result, asked_at)
    return web.json_response(result)


async def health_handler(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "calls": len(request.app[CALLS])})


def create_app(services: Services, office: Office | None = None) -> web.Application:
    app = web.Application()
    app[SERVICES] = services
    app[OFFICE] = office or Office()
    console.add_routes(app)
    app[CALLS] = set()
    app[CHAT_MEMORY] = chat.ChatMemory()
    app.router.add_get("/call", call_handler)
    app.router.add_post("/api/chat", chat_handler)
    app.router.add_get("/healthz", health_handler)
    app.on_startup.append(_start_background)
    app.on_shutdown.append(_close_calls)
    app.on_cleanup.append(_stop_background)
    return app


async def _start_background(app: web.Application) -> None:
    tasks: list[asyncio.Task[None]] = [
        asyncio.create_task(work()) for work in app[SERVICES].background
    ]
    app[BACKGROUND] = tasks


async def _stop_background(app: web.Application) -> None:
    for task in app[BACKGROUND]:
        task.cancel()
    await asyncio.gather(*app[BACKGROUND], return_exceptions=True)


async def _close_calls(app: web.Application) -> None:
    async def close(ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            await asyncio.wait_for(
                ws.send_str(protocol.encode(protocol.End(reason="server_shutdown"))), 2
            )
            await asyncio.wait_for(ws.close(code=protocol.CLOSE_GOING_AWAY), 2)

    calls: set[web.WebSocketResponse] = app[CALLS]
    await asyncio.gather(*(close(ws) for ws in list(calls)))


async def start_server(
    services: Services, host: str, port: int, office: Office | None = None
) -> tuple[web.AppRunner, int]:
    """Start serving in the running loop; returns the runner (call `cleanup()`) and the port."""
    runner = web.AppRunner(create_app(services, office), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
