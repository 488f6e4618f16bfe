"""`/call` and `/api/chat`: callers on the caller protocol (docs/protocol.md) and typed
questions; thin I/O around CallSession. The phone dialect `/twilio` is in `voice.channels.phone`."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

from aiohttp import WSMessage, WSMsgType, web
from redis.exceptions import RedisError

from voice.call.session import CallSession
from voice.channels import chat, protocol
from voice.channels.closes import CloseCode
from voice.channels.protocol import ProtocolError
from voice.config import CallSettings, Settings
from voice.office.backoffice import OFFICE
from voice.office.records import Channel
from voice.ops.access import bearer
from voice.ops.line import (
    METRICS,
    SERVICES,
    TOKENS,
    UNAUTHORIZED_MESSAGE,
    Ending,
    StartedCall,
    WebSocketLine,
    answer_websocket,
    check_size,
    header_token,
    messages,
    refuse_broken,
    serve_call,
    unauthorized,
)
from voice.ops.services import Services

log = logging.getLogger(__name__)

CHATS = web.AppKey("chats", chat.Chats)  # type: ignore[type-abstract]
SHARED_ERRORS = (RedisError, OSError)
"""What a chat session in Redis fails with while Redis is down."""


def add_routes(app: web.Application) -> None:
    """The routes, and the chat sessions' life: on an app whose SERVICES and OFFICE are set."""
    app[CHATS] = _chats(app)
    app.router.add_get("/call", call_handler)
    app.router.add_post("/api/chat", chat_handler)
    app.cleanup_ctx.append(_chat_life)


class CallerTransport:
    """The caller protocol's side of a session: events as JSON text, audio as binary frames.
    Events newer than the caller's protocol `version` are not sent. Callers report no
    playback; the session estimates it."""

    def __init__(self, line: WebSocketLine, version: int = protocol.VERSION) -> None:
        self._line = line
        self._version = version

    async def send_event(self, event: protocol.Event) -> None:
        if event.since <= self._version:
            await self._line.send_str(protocol.encode(event))

    async def send_audio(self, data: bytes) -> None:
        await self._line.send_bytes(data)

    async def mark(self, turn: int, position_ms: int) -> None:
        pass

    def played_ms(self, turn: int) -> int | None:
        return None

    async def played(self, turn: int, position_ms: int) -> None:
        """Callers do not report playback: nothing to wait for."""


async def call_handler(request: web.Request) -> web.StreamResponse:
    """`/call`: the caller protocol (docs/protocol.md). A caller token, when the server asks
    for one, comes in the `Authorization: Bearer` header or the start message's `token`."""
    token, vouched = header_token(request, "call")
    run = functools.partial(_run_call, request.app, token)
    return await answer_websocket(request, run, _farewell, vouched=vouched)


async def _run_call(
    app: web.Application, header_token: str | None, line: WebSocketLine, call_id: str
) -> Ending:
    services = app[SERVICES]
    try:
        start = await _receive_start(line.ws, services)
    except ProtocolError as err:
        log.info("call refused: %s", err.code)
        return Ending("error", err.close_code or CloseCode.BAD_START, err)
    if not app[TOKENS].allows("call", header_token or start.token):
        log.warning("call refused: no valid caller token")
        app[METRICS].refused.labels("unauthorized").inc()
        error = ProtocolError("unauthorized", UNAUTHORIZED_MESSAGE, CloseCode.UNAUTHORIZED)
        return Ending("unauthorized", CloseCode.UNAUTHORIZED, error)
    log.info("call started (%s %d Hz)", start.audio.encoding, start.audio.sample_rate)
    channel: Channel = "kiosk" if start.metadata.get("channel") == "kiosk" else "call"
    transport = CallerTransport(line, start.version)
    ready = protocol.Ready(
        call_id=call_id,
        version=start.version,
        audio={"encoding": start.audio.encoding, "sample_rate": start.audio.sample_rate},
        feedback_token=app[OFFICE].feedback_keys.token(call_id),
    )
    return await serve_call(
        app,
        StartedCall(call_id, start, channel),
        line,
        transport,
        functools.partial(_receive_loop, line.ws, services.settings),
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
    refuse_broken(message)
    if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        raise ProtocolError("bad_start", "The call closed before it started.", CloseCode.BAD_START)
    check_size(message, services.settings.call)
    start = protocol.parse_start(message.data)
    language = start.language
    if language is not None and not services.transcriber.supports(language):
        raise ProtocolError(
            "unsupported_language",
            f"This server does not recognize the language {language!r}.",
            CloseCode.BAD_START,
        )
    return start


async def _receive_loop(
    ws: web.WebSocketResponse,
    settings: Settings,
    session: CallSession,
    ending: Ending,
) -> None:
    """Read caller messages until hang-up, close, or a fatal error (recorded in `ending`)."""
    limits = settings.call
    try:
        async for message in messages(ws, limits):
            try:
                await _take(message, session, limits)
            except Hungup:
                return
            except ProtocolError as err:
                if err.close_code is not None:
                    raise
                await session.report(protocol.Error(code=err.code, message=err.message))
    except ProtocolError as err:
        ending.end_with(err)
        return
    ending.reason = "disconnected"


class Hungup(Exception):
    """The caller said `hangup`."""


async def _take(message: WSMessage, session: CallSession, limits: CallSettings) -> None:
    """One message from the caller, into the session."""
    if message.type == WSMsgType.BINARY:
        protocol.check_audio_frame(message.data, session.audio_format, limits.max_frame_ms)
        await session.on_audio(message.data)
        return
    parsed = protocol.parse_message(message.data)
    if isinstance(parsed, protocol.HangUp):
        raise Hungup()
    if isinstance(parsed, protocol.TextQuestion):
        await session.on_text(parsed.text)
    elif isinstance(parsed, protocol.StopReply):
        await session.stop_reply()
    elif isinstance(parsed, protocol.KeyPress):
        await session.on_key(parsed.digit)


async def chat_handler(request: web.Request) -> web.Response:
    """`POST /api/chat`: {"message", "session_id"?} → {"reply", "sources", "handoff", ...}.
    Takes a caller token in `Authorization: Bearer` when the server asks for one."""
    if not request.app[TOKENS].allows("chat", bearer(request)):
        request.app[METRICS].refused.labels("unauthorized").inc()
        return unauthorized()
    services, office, chats = request.app[SERVICES], request.app[OFFICE], request.app[CHATS]
    try:
        message, session_id = chat.parse_request(await request.read())
    except chat.ChatError as err:
        return chat.error_response(err)
    try:
        turn = await chats.take(session_id or chat.new_session_id())
    except SHARED_ERRORS as err:
        log.error("a chat message refused: its session cannot be read: %s", err)
        return chat.error_response(chat.SESSIONS_DOWN, status=503)
    monitor = office.text_turn(turn)
    monitor.event(protocol.FinalTranscript(turn=turn.turn, text=message))
    memory_turns = services.settings.agent.memory_turns
    try:
        reply, exchange = await chat.answer(services.agent, turn, message, memory_turns)
        monitor.event(reply)
    finally:
        monitor.unanswered()
    try:
        await chats.remember(turn, exchange)
    except SHARED_ERRORS as err:
        log.error("a chat exchange not remembered: %s", err)
    return web.json_response(
        {
            "reply": reply.text,
            "sources": reply.sources,
            "handoff": reply.handoff,
            "rules": reply.rules,
            "session_id": turn.session_id,
            "call_id": turn.call_id,
            "feedback_token": office.feedback_keys.token(turn.call_id),
        }
    )


def _chats(app: web.Application) -> chat.Chats:
    """The chat sessions: in Redis when the server shares a live floor (`live.url`), so any
    server continues them; else in this server."""
    settings = app[SERVICES].settings
    office = app[OFFICE]
    idle_s, memory = settings.call.text_idle_timeout_s, settings.agent.memory_turns
    if settings.live.url is not None:
        from voice.channels.shared_chats import SharedChats

        return SharedChats(settings.live.url, settings.live.prefix, idle_s, memory, office.end_text)
    return chat.InProcessChats(chat.ChatSessions(idle_s), memory, office.end_text)


async def _chat_life(app: web.Application) -> AsyncIterator[None]:
    """While the server runs, each chat session ends once it has been idle
    `call.text_idle_timeout_s`; when it stops, those only it would end end with it."""
    chats = app[CHATS]
    ending = asyncio.create_task(chats.end_idle())
    yield
    ending.cancel()
    await asyncio.gather(ending, return_exceptions=True)
    await chats.close()
