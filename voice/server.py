"""The HTTP and websocket server: `/call` for callers (the phone dialect `/twilio` is in
`voice.phone`), `/api/chat`, `/healthz`; thin I/O around CallSession."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

from aiohttp import WSMsgType, web

from voice import chat, console, phone, protocol
from voice.config import Settings
from voice.line import (
    CALLS,
    SERVICES,
    Ending,
    StartedCall,
    WebSocketLine,
    answer_websocket,
    serve_call,
)
from voice.office import OFFICE, Office
from voice.protocol import ProtocolError
from voice.records import Channel
from voice.services import Services
from voice.session import CallSession

log = logging.getLogger(__name__)

CHAT_MEMORY = web.AppKey("chat_memory", chat.ChatMemory)
BACKGROUND = web.AppKey("background", list[asyncio.Task[None]])


class CallerTransport:
    """The caller protocol's side of a session: events as JSON text, audio as binary frames.
    Callers report no playback; the session estimates it."""

    def __init__(self, line: WebSocketLine) -> None:
        self._line = line

    async def send_event(self, event: protocol.Event) -> None:
        await self._line.send_str(protocol.encode(event))

    async def send_audio(self, data: bytes) -> None:
        await self._line.send_bytes(data)

    async def mark(self, turn: int, position_ms: int) -> None:
        pass

    def played_ms(self, turn: int) -> int | None:
        return None


async def call_handler(request: web.Request) -> web.WebSocketResponse:
    """`/call`: the caller protocol (docs/protocol.md)."""
    return await answer_websocket(request, functools.partial(_run_call, request.app), _farewell)


async def _run_call(app: web.Application, line: WebSocketLine, call_id: str) -> Ending:
    services = app[SERVICES]
    try:
        start = await _receive_start(line.ws, services)
    except ProtocolError as err:
        log.info("call %s refused: %s", call_id, err.code)
        return Ending("error", err.close_code or protocol.CLOSE_BAD_START, err)
    log.info("call %s started (%s %d Hz)", call_id, start.audio.encoding, start.audio.sample_rate)
    channel: Channel = "kiosk" if start.metadata.get("channel") == "kiosk" else "call"
    transport = CallerTransport(line)
    ready = protocol.Ready(
        call_id=call_id,
        version=protocol.VERSION,
        audio={"encoding": start.audio.encoding, "sample_rate": start.audio.sample_rate},
    )
    return await serve_call(
        app,
        services,
        StartedCall(call_id, start, channel),
        line,
        transport,
        functools.partial(_receive_loop, line.ws, services.settings, transport),
        greet=functools.partial(transport.send_event, ready),
    )


async def _farewell(line: WebSocketLine, ending: Ending) -> None:
    if ending.error is not None:
        error = protocol.Error(code=ending.error.code, message=ending.error.message, fatal=True)
        await line.send_str(protocol.encode(error))
    await line.send_str(protocol.encode(protocol.End(reason=ending.reason)))


async def _receive_start(ws: web.WebSocketResponse, services: Services) -> protocol.Start:
    """The start message, within `start_timeout_s` overall (pings do not extend it)."""
    timeout_s = services.settings.call.start_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            message = await ws.receive()
    except TimeoutError:
        raise protocol.start_timed_out(timeout_s) from None
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
    settings: Settings,
    transport: CallerTransport,
    session: CallSession,
    ending: Ending,
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
                if isinstance(parsed, protocol.TextQuestion):
                    await session.on_text(parsed.text)
                elif isinstance(parsed, protocol.StopReply):
                    await session.stop_reply()
                elif isinstance(parsed, protocol.KeyPress):
                    await session.on_key(parsed.digit)
        except ProtocolError as err:
            if err.close_code is not None:
                ending.reason, ending.close_code, ending.error = "error", err.close_code, err
                return
            await transport.send_event(protocol.Error(code=err.code, message=err.message))
    ending.reason = "disconnected"


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
    phone.add_routes(app)
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
