"""A caller's websocket and the life of a started call on the server, whatever the dialect
(the caller protocol on `/call`, Twilio Media Streams on `/twilio`): admission against the line
limit, the per-connection limits, sending without ever letting a caller who stopped reading hold
a call up, and the close."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from voice.call.observer import Observers
from voice.call.session import CallSession
from voice.call.transport import CallClosed, Transport
from voice.channels import protocol
from voice.channels.closes import CloseCode
from voice.channels.protocol import ProtocolError
from voice.config import CallSettings
from voice.office.backoffice import OFFICE, LiveCall
from voice.office.records import Channel
from voice.office.tap import AudioTap
from voice.ops.access import CallerTokens, Endpoint, bearer
from voice.ops.admission import Admission, BusySignal, MessageRate
from voice.ops.logs import call_scope
from voice.ops.metrics import Metrics
from voice.ops.services import Services

log = logging.getLogger(__name__)

HARD_MESSAGE_LIMIT = 1 << 20
"""Messages over this are cut off by the websocket layer itself (close 1009, no error event)."""

UNAUTHORIZED_MESSAGE = "A valid caller token is required."

SERVICES = web.AppKey("services", Services)
ADMISSION = web.AppKey("admission", Admission)
BUSY = web.AppKey("busy", BusySignal)
METRICS = web.AppKey("metrics", Metrics)
TOKENS = web.AppKey("tokens", CallerTokens)


class CallLine:
    """One caller's connection to the server, whatever carries it (a websocket, a SIP dialog).

    `ended` is set when the call is to be closed from the server's side: the caller stopped
    reading (`closed_code` is then set), or `finish` (a handoff, the server shutting down).
    """

    def __init__(self, address: str = "", vouched: bool = False) -> None:
        self.address = address
        """The remote address the connection came from."""
        self.vouched = vouched
        """True when the connection itself carried valid credentials (a caller token in its
        header, a valid carrier signature, an allowed SIP peer): such a caller waits in a room
        strangers cannot fill."""
        self.started = False
        """True once the caller's start message was taken."""
        self.closed_code: CloseCode | None = None
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.end_code = CloseCode.NORMAL

    def finish(self, reason: str, code: CloseCode = CloseCode.NORMAL) -> None:
        """End the call from the server's side: `reason` is kept in its record."""
        self.end_reason, self.end_code = reason, code
        self.ended.set()


class WebSocketLine(CallLine):
    """Sends on one websocket; a caller that takes nothing for `send_timeout_s` is closed (4409)."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        send_timeout_s: float,
        address: str = "",
        vouched: bool = False,
        connection: asyncio.Transport | None = None,
    ) -> None:
        super().__init__(address, vouched)
        self.ws = ws
        self._connection = connection
        """The connection under the websocket (`web.Request.transport`), dropped when a caller
        who stopped reading does not take the close frame either."""
        self._timeout = send_timeout_s
        self._pending: set[asyncio.Future[None]] = set()

    async def send_str(self, text: str) -> None:
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
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("caller stopped reading for %g s; closing the call", self._timeout)
            self.closed_code = CloseCode.NOT_READING
            self.ended.set()
            raise CallClosed() from None
        except (ConnectionError, RuntimeError) as err:
            raise CallClosed() from err

    def _settled(self, task: asyncio.Future[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed send is reported through the awaiting caller

    async def close(
        self, code: CloseCode, farewell: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Close the websocket with `code`, after `farewell` (the dialect's last words) when the
        caller still reads. A caller that stopped reading gets 1 s for the close frame, then
        the connection is dropped."""
        ws = self.ws
        if ws.closed:
            return
        if self.closed_code is not None:
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                async with asyncio.timeout(1):
                    await ws.close(code=self.closed_code)
            if self._connection is not None:
                self._connection.abort()
            for task in list(self._pending):
                task.cancel()
            return
        with contextlib.suppress(CallClosed, ConnectionError, RuntimeError):
            await farewell()
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            async with asyncio.timeout(5):
                await ws.close(code=code)


class Lines:
    """Every caller connection open on the server, started or not. Used from one event loop."""

    def __init__(self) -> None:
        self._lines: set[CallLine] = set()
        self._none = asyncio.Event()
        self._none.set()

    def add(self, line: CallLine) -> None:
        self._lines.add(line)
        self._none.clear()

    def discard(self, line: CallLine) -> None:
        self._lines.discard(line)
        if not self._lines:
            self._none.set()

    def __iter__(self) -> Iterator[CallLine]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    async def emptied(self) -> None:
        """Return once no connection is open (at once when none is)."""
        await self._none.wait()


LINES = web.AppKey("lines", Lines)
"""Every caller connection open on the server, started or not."""


@dataclass
class Ending:
    """How a call ended: the reason kept in its record, the close code, the error if any."""

    reason: str = "hangup"
    close_code: CloseCode = CloseCode.NORMAL
    error: ProtocolError | None = None

    def end_with(self, error: ProtocolError) -> None:
        """The caller broke a rule that ends the call: a per-connection limit (the reason is
        its code) or the protocol (the reason is "error")."""
        assert error.close_code is not None
        limit = error.close_code in (CloseCode.IDLE, CloseCode.TOO_MANY)
        self.reason = error.code if limit else "error"
        self.close_code, self.error = error.close_code, error


async def answer_websocket(
    request: web.Request,
    run: Callable[[WebSocketLine, str], Coroutine[Any, Any, Ending]],
    farewell: Callable[[WebSocketLine, Ending], Coroutine[Any, Any, None]],
    *,
    vouched: bool = False,
) -> web.StreamResponse:
    """Take a caller's websocket, `run` its call (given the line and a new call id), then say
    the dialect's `farewell` and close with the ending's code. While the server shuts down,
    new callers are refused with HTTP 503 before the upgrade.

    Connections that have not started wait in one of two rooms of `limits.max_waiting` each:
    one for callers whose upgrade was `vouched` for (credentials checked already), one for the
    rest, where one address may hold `limits.max_waiting_per_address` at most. Strangers can
    fill their own room, never the room of a caller who holds a token."""
    app = request.app
    if app[ADMISSION].draining:
        app[METRICS].refused.labels("shutting_down").inc()
        return refusal(503, "shutting_down", "The server is shutting down; call again shortly.")
    address = request.remote or ""
    refused = _waiting_room_full(app, address, vouched)
    if refused is not None:
        app[METRICS].refused.labels("too_many_waiting").inc()
        return refused
    settings = app[SERVICES].settings.call
    ws = web.WebSocketResponse(max_msg_size=HARD_MESSAGE_LIMIT, heartbeat=settings.ping_interval_s)
    await ws.prepare(request)
    call_id = uuid.uuid4().hex[:12]
    line = WebSocketLine(ws, settings.send_timeout_s, address, vouched, request.transport)
    with call_scope(call_id):
        app[LINES].add(line)
        try:
            ending = await run(line, call_id)
        finally:
            app[LINES].discard(line)
        if ending.error is not None:
            app[METRICS].errors.labels(ending.error.code).inc()
        await line.close(ending.close_code, functools.partial(farewell, line, ending))
        log.info("call ended: %s (close %d)", ending.reason, ending.close_code)
    return ws


def _waiting_room_full(app: web.Application, address: str, vouched: bool) -> web.Response | None:
    """The refusal for a new connection when its waiting room is full, else None."""
    limits = app[SERVICES].settings.limits
    room = [line for line in app[LINES] if not line.started and line.vouched == vouched]
    if len(room) >= limits.max_waiting:
        log.warning(
            "refused a connection: %d %s connections have not started yet",
            len(room),
            "vouched-for" if vouched else "unvouched",
        )
        return refusal(503, "busy", "Too many connections are starting; call again shortly.")
    if vouched:
        return None
    mine = sum(1 for line in room if line.address == address)
    if mine >= limits.max_waiting_per_address:
        log.warning("refused a connection from %s: it holds %d not started", address, mine)
        return refusal(
            503, "busy", "Too many connections from your address are starting; call again shortly."
        )
    return None


def refusal(status: int, code: str, message: str) -> web.Response:
    """An HTTP answer to a refused upgrade: `{"error": {"code", "message"}}`."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def header_token(request: web.Request, endpoint: Endpoint) -> tuple[str | None, bool]:
    """The caller token in the upgrade's `Authorization: Bearer` header, and whether it vouches
    for the caller (the server asks for tokens and this is one). Checked before the websocket
    opens, so that a wrong one never takes a place among the connections waiting to start.

    Raises:
        web.HTTPUnauthorized: the header holds a token that does not open `endpoint` (401).
    """
    token = bearer(request)
    tokens = request.app[TOKENS]
    if token is not None and not tokens.allows(endpoint, token):
        request.app[METRICS].refused.labels("unauthorized").inc()
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": {"code": "unauthorized", "message": UNAUTHORIZED_MESSAGE}}),
            content_type="application/json",
        )
    return token, tokens.required and token is not None


def unauthorized() -> web.Response:
    """HTTP 401 for a caller whose `Authorization` header holds no valid token."""
    return refusal(401, "unauthorized", UNAUTHORIZED_MESSAGE)


async def messages(ws: web.WebSocketResponse, limits: CallSettings) -> AsyncIterator[WSMessage]:
    """The caller's text and binary messages until the websocket closes.

    Raises:
        ProtocolError: the caller sent nothing for `idle_timeout_s` (4410), more messages than
            `max_messages_per_s` allows (4429), or one over `max_frame_bytes` (1009).
    """
    rate = MessageRate(limits.max_messages_per_s, limits.burst_s)
    while True:
        try:
            message = await ws.receive(timeout=limits.idle_timeout_s)
        except TimeoutError:
            raise ProtocolError(
                "idle_timeout",
                f"Nothing came from the caller for {limits.idle_timeout_s:g} s.",
                CloseCode.IDLE,
            ) from None
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return
        refuse_broken(message)
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            continue
        if not rate.take():
            raise ProtocolError(
                "too_many_messages",
                f"A caller may send at most {limits.max_messages_per_s:g} messages a second.",
                CloseCode.TOO_MANY,
            )
        check_size(message, limits)
        yield message


def refuse_broken(message: WSMessage) -> None:
    """A message the websocket layer refused, as the error it closed the connection with: a
    message over `HARD_MESSAGE_LIMIT` (1009), a broken frame (1002), text that is not UTF-8 (1007).

    Raises:
        ProtocolError: `message` is such an error; other messages pass.
    """
    if message.type is not WSMsgType.ERROR:
        return
    code = getattr(message.data, "code", None)
    if code == WSCloseCode.MESSAGE_TOO_BIG:
        raise ProtocolError(
            "frame_too_big",
            f"Messages may be at most {HARD_MESSAGE_LIMIT} bytes at all.",
            CloseCode.TOO_BIG,
        )
    raise ProtocolError(
        "bad_frame",
        f"The websocket layer refused a frame: {message.data}",
        CloseCode.BAD_TEXT if code == WSCloseCode.INVALID_TEXT else CloseCode.BAD_FRAME,
    )


def check_size(message: WSMessage, limits: CallSettings) -> None:
    """Refuse a message over `max_frame_bytes` before anything parses it (1009)."""
    if len(message.data) > limits.max_frame_bytes:
        raise ProtocolError(
            "frame_too_big",
            f"Messages may be at most {limits.max_frame_bytes} bytes.",
            CloseCode.TOO_BIG,
        )


Receiver = Callable[[CallSession, Ending], Coroutine[Any, Any, None]]
"""Reads the caller's messages into the session until the caller is done, noting in the
`Ending` how the call ended when that is not a plain hang-up."""


@dataclass(frozen=True)
class StartedCall:
    call_id: str
    start: protocol.Start
    channel: Channel
    transfers: bool = False
    """A handoff leaves this server for a person elsewhere (a carrier's `<Dial>`, a SIP
    transfer); else the call waits in the console's handoff queue."""


async def serve_call(
    app: web.Application,
    call: StartedCall,
    line: CallLine,
    transport: Transport,
    receive: Receiver,
    greet: Callable[[], Coroutine[Any, Any, None]] | None = None,
    overhear: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> Ending:
    """Serve one started call until the caller is done, the server ends it, or the session
    fails; returns how it ended. A caller beyond `limits.max_calls` hears the busy message
    instead (meanwhile `overhear` reads what their side sends: a carrier's marks) and is closed
    with 1013. Nothing the call started keeps running after this."""
    line.started = True
    admission, metrics = app[ADMISSION], app[METRICS]
    if admission.draining:
        metrics.refused.labels("shutting_down").inc()
        return Ending("server_shutdown", CloseCode.GOING_AWAY)
    if not admission.admit():
        log.warning("caller turned away: busy (%d calls)", admission.active)
        metrics.refused.labels("busy").inc()
        busy = app[BUSY]
        listening = asyncio.create_task(overhear()) if overhear is not None else None
        try:
            with contextlib.suppress(CallClosed):
                await say_busy(transport, busy, call.start)
        finally:
            if listening is not None:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
        return Ending("busy", CloseCode.BUSY, ProtocolError("busy", busy.text, CloseCode.BUSY))
    try:
        return await _watched(app, call, line, transport, receive, greet)
    finally:
        admission.release()


async def _watched(
    app: web.Application,
    call: StartedCall,
    line: CallLine,
    transport: Transport,
    receive: Receiver,
    greet: Callable[[], Coroutine[Any, Any, None]] | None,
) -> Ending:
    """The call, watched by the back office and counted in the metrics."""
    services, office, metrics = app[SERVICES], app[OFFICE], app[METRICS]
    start = call.start
    monitor = office.monitor(
        call.call_id, call.channel, start.caller_id, start.metadata, start.audio.sample_rate
    )
    monitor.started()
    tap = AudioTap(start.audio.sample_rate)
    observers = Observers(monitor, metrics.observer(call.channel), tap)
    session = CallSession(
        services,
        start,
        transport,
        observer=observers,
        hang_up=line.finish,
        queue_handoffs=not call.transfers,
    )
    office.calls[call.call_id] = LiveCall(session, monitor, tap, call.channel, start.caller_id)
    metrics.calls_active.labels(call.channel).inc()
    ending = Ending(reason="server_shutdown")
    try:
        ending = await _run(session, line, receive, greet, services.settings.call.max_call_s)
        return ending
    finally:
        office.calls.pop(call.call_id, None)
        tap.close()
        monitor.ended(ending.reason)
        metrics.calls_active.labels(call.channel).dec()
        metrics.calls.labels(call.channel, ending.reason).inc()


async def _run(
    session: CallSession,
    line: CallLine,
    receive: Receiver,
    greet: Callable[[], Coroutine[Any, Any, None]] | None,
    max_call_s: float,
) -> Ending:
    ending = Ending()
    listener = asyncio.create_task(session.listen())
    receiver = asyncio.create_task(receive(session, ending))
    ended = asyncio.create_task(line.ended.wait())
    too_long = False
    try:
        if greet is not None:
            await greet()
        done, _ = await asyncio.wait(
            {listener, receiver, ended}, timeout=max_call_s, return_when=asyncio.FIRST_COMPLETED
        )
        too_long = not done
    except CallClosed:
        pass
    finally:
        for task in (listener, receiver, ended):
            task.cancel()
        await asyncio.gather(listener, receiver, ended, return_exceptions=True)
        await session.close()
    if line.closed_code is not None:
        return Ending("not_reading", line.closed_code)
    if line.end_reason is not None:
        return Ending(line.end_reason, line.end_code)
    if too_long:
        log.info("call reached call.max_call_s (%g s)", max_call_s)
        error = ProtocolError(
            "call_too_long", f"Calls last at most {max_call_s:g} s.", CloseCode.TOO_LONG
        )
        return Ending("max_duration", CloseCode.TOO_LONG, error)
    for task in (listener, receiver):
        failure = None if task.cancelled() else task.exception()
        if failure is not None and not isinstance(failure, CallClosed):
            log.error("call failed: %r", failure)
            return Ending("error", CloseCode.INTERNAL)
    return ending


BUSY_TURN = 0
"""The busy message is marked as turn 0: no real turn has that number."""


async def say_busy(transport: Transport, busy: BusySignal, start: protocol.Start) -> None:
    """Play the busy message to a caller who gets no line, and wait until it has played (as
    the caller's side reports, or by the clock), at most its length and two seconds more."""
    data = busy.encoded(start.audio)
    step = start.audio.frame_bytes(40)
    for offset in range(0, len(data), step):
        await transport.send_audio(data[offset : offset + step])
    length_ms = round(start.audio.duration_ms(len(data)))
    await transport.mark(BUSY_TURN, length_ms)
    if not start.realtime_playback:
        return
    if transport.played_ms(BUSY_TURN) is None:  # this wire does not report: the clock says
        await asyncio.sleep(length_ms / 1000)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(length_ms / 1000 + 2.0):
            await transport.played(BUSY_TURN, length_ms)


async def drain(app: web.Application, grace_s: float) -> None:
    """Shut down the calls: take no new ones, let each finish its current turn for up to
    `grace_s`, then close every connection with 1001."""
    app[ADMISSION].draining = True
    sessions = [live.session for live in app[OFFICE].calls.values()]
    if sessions:
        log.info("letting %d calls finish their turn (up to %g s)", len(sessions), grace_s)
        finishing = [asyncio.create_task(s.finish_turn()) for s in sessions]
        _, late = await asyncio.wait(finishing, timeout=grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*finishing, return_exceptions=True)
    lines = app[LINES]
    for line in list(lines):
        if line.started or not isinstance(line, WebSocketLine):
            line.finish("server_shutdown", CloseCode.GOING_AWAY)
        else:
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                async with asyncio.timeout(2):
                    await line.ws.close(code=CloseCode.GOING_AWAY)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await lines.emptied()  # their handlers end on their own
