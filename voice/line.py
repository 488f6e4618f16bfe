"""Sending to one caller's websocket, without ever letting a caller who stopped reading hold a
call up; and the life of a started call on the server, whatever the wire dialect."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from voice import protocol
from voice.office import OFFICE
from voice.protocol import ProtocolError
from voice.records import Channel
from voice.services import Services
from voice.session import CallSession
from voice.transport import CallClosed, Transport

log = logging.getLogger(__name__)

HARD_MESSAGE_LIMIT = 1 << 20
"""Messages over this are cut off by the websocket layer itself (close 1009, no error event)."""
PING_INTERVAL_S = 20.0
"""The server pings every caller this often; one that does not answer is disconnected."""

SERVICES = web.AppKey("services", Services)
CALLS = web.AppKey("calls", set[web.WebSocketResponse])
"""Every caller connection open on the server, started or not."""


class WebSocketLine:
    """Sends on one websocket; a caller that takes nothing for `send_timeout_s` is closed (4409).

    `ended` is set when the call is to be closed from the sending side: the caller stopped
    reading (`closed_code` is then set), or the wire's dialect ends the call (a phone handoff).
    """

    def __init__(self, ws: web.WebSocketResponse, send_timeout_s: float) -> None:
        self.ws = ws
        self._timeout = send_timeout_s
        self.closed_code: int | None = None
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self._pending: set[asyncio.Future[None]] = set()

    def finish(self, reason: str) -> None:
        """End the call from the sending side, for the dialect's own reason (a phone handoff)."""
        self.end_reason = reason
        self.ended.set()

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
            await asyncio.wait_for(asyncio.shield(task), self._timeout)
        except TimeoutError:
            log.warning("caller stopped reading for %g s; closing the call", self._timeout)
            self.closed_code = protocol.CLOSE_NOT_READING
            self.ended.set()
            raise CallClosed() from None
        except (ConnectionError, RuntimeError) as err:
            raise CallClosed() from err

    def _settled(self, task: asyncio.Future[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed send is reported through the awaiting caller

    async def close(self, code: int, farewell: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Close the websocket with `code`, after `farewell` (the dialect's last words) when the
        caller still reads. A caller that stopped reading gets 1 s for the close frame, then
        the connection is dropped."""
        ws = self.ws
        if ws.closed:
            return
        if self.closed_code is not None:
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                await asyncio.wait_for(ws.close(code=self.closed_code), 1)
            if ws._req is not None and ws._req.transport is not None:
                ws._req.transport.abort()
            for task in list(self._pending):
                task.cancel()
            return
        with contextlib.suppress(CallClosed, ConnectionError, RuntimeError):
            await farewell()
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            await asyncio.wait_for(ws.close(code=code), 5)


@dataclass
class Ending:
    """How a call ended: the reason kept in its record, the close code, the error if any."""

    reason: str = "hangup"
    close_code: int = protocol.CLOSE_NORMAL
    error: ProtocolError | None = None


async def answer_websocket(
    request: web.Request,
    run: Callable[[WebSocketLine, str], Coroutine[Any, Any, Ending]],
    farewell: Callable[[WebSocketLine, Ending], Coroutine[Any, Any, None]],
) -> web.WebSocketResponse:
    """Take a caller's websocket, `run` its call (given the line and a new call id), then say
    the dialect's `farewell` and close with the ending's code."""
    services = request.app[SERVICES]
    ws = web.WebSocketResponse(max_msg_size=HARD_MESSAGE_LIMIT, heartbeat=PING_INTERVAL_S)
    await ws.prepare(request)
    call_id = uuid.uuid4().hex[:12]
    line = WebSocketLine(ws, services.settings.call.send_timeout_s)
    request.app[CALLS].add(ws)
    try:
        ending = await run(line, call_id)
    finally:
        request.app[CALLS].discard(ws)
    await line.close(ending.close_code, functools.partial(farewell, line, ending))
    log.info("call %s ended: %s", call_id, ending.reason)
    return ws


Receiver = Callable[[CallSession, Ending], Coroutine[Any, Any, None]]
"""Reads the caller's messages into the session until the caller is done, noting in the
`Ending` how the call ended when that is not a plain hang-up."""


@dataclass(frozen=True)
class StartedCall:
    call_id: str
    start: protocol.Start
    channel: Channel


async def serve_call(
    app: web.Application,
    services: Services,
    call: StartedCall,
    line: WebSocketLine,
    transport: Transport,
    receive: Receiver,
    greet: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> Ending:
    """Serve one started call, watched by the back office, until the caller is done, the line
    ends it, or the session fails; returns how it ended. Nothing the call started keeps running
    after this returns."""
    office = app[OFFICE]
    start = call.start
    monitor = office.monitor(
        call.call_id, call.channel, start.caller_id, start.metadata, start.audio.sample_rate
    )
    monitor.started()
    session = CallSession(services, start, transport, observer=monitor)
    office.calls[call.call_id] = session
    ending = Ending(reason="server_shutdown")
    try:
        ending = await _run(call.call_id, session, line, receive, greet)
        return ending
    finally:
        office.calls.pop(call.call_id, None)
        monitor.ended(ending.reason)


async def _run(
    call_id: str,
    session: CallSession,
    line: WebSocketLine,
    receive: Receiver,
    greet: Callable[[], Coroutine[Any, Any, None]] | None,
) -> Ending:
    ending = Ending()
    listener = asyncio.create_task(session.listen())
    receiver = asyncio.create_task(receive(session, ending))
    ended = asyncio.create_task(line.ended.wait())
    try:
        if greet is not None:
            await greet()
        await asyncio.wait({listener, receiver, ended}, return_when=asyncio.FIRST_COMPLETED)
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
        return Ending(line.end_reason)
    for task in (listener, receiver):
        failure = None if task.cancelled() else task.exception()
        if failure is not None and not isinstance(failure, CallClosed):
            log.error("call %s failed: %r", call_id, failure)
            return Ending("error", protocol.CLOSE_INTERNAL)
    return ending
