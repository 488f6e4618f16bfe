"""Calls from the company's PBX over SIP (docs/sip.md): each call the SIP user agent answers is
served like every other channel's, by the same call session, records and console.

Off unless `sip.listen` is set; then PJSIP (the `pjsua2-python` wheel) is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from aiohttp import web

from voice.call.session import CallSession
from voice.call.transport import CallClosed
from voice.channels import protocol
from voice.channels.codecs import AudioFormat
from voice.channels.sip import Gone, Heard, Keyed, Transferred, caller_of, host_of
from voice.config import SipSettings
from voice.ops.line import (
    ADMISSION,
    LINES,
    METRICS,
    SERVICES,
    CallLine,
    Ending,
    StartedCall,
    serve_call,
)
from voice.ops.logs import call_scope
from voice.ops.startup import StartupError

if TYPE_CHECKING:
    from voice.channels.sip_agent import SipAgent, SipCall

log = logging.getLogger(__name__)

SIP_AGENT: web.AppKey[SipAgent] = web.AppKey("sip_agent")
SIP_CALLS = web.AppKey("sip_calls", set[asyncio.Task[None]])


class SipTransport:
    """The PBX's side of a call. Reply audio waits in the call's `Playout` for the line's
    clock; a mark is reported when the audio before it has gone out on the line, which is what
    the caller heard. Barge-in drops what waits. A handoff transfers the call to
    `sip.transfer_to` (REFER) once its words have played, and the call ends when the transfer
    is confirmed (or after `sip.transfer_timeout_s`); a refused transfer is told to the caller,
    who stays with the assistant. Without a target, the call waits in the console's handoff
    queue. Text events stay on the server: the console and the records."""

    def __init__(self, call: SipCall, line: CallLine, settings: SipSettings) -> None:
        self._call = call
        self._line = line
        self._settings = settings
        self.transferring: asyncio.TimerHandle | None = None

    async def send_event(self, event: protocol.Event) -> None:
        if isinstance(event, protocol.Clear):
            self._call.reports.clear(event.turn)
            if self._call.playout is not None:
                self._call.playout.clear()
        elif isinstance(event, protocol.Handoff):
            target = self._settings.transfer_to
            if target is None:
                log.info("handoff (%s): no sip.transfer_to; the call waits for a person", event.by)
                return
            log.info("handoff (%s): transferring to %s", event.by, target)
            self._call.transfer(target)
            loop = asyncio.get_running_loop()
            self.transferring = loop.call_later(
                self._settings.transfer_timeout_s, self._line.finish, "handoff"
            )
        elif isinstance(event, protocol.Error):
            log.warning("SIP caller not told: %s", event.code)

    async def transferred(self, status: int, session: CallSession) -> None:
        """The transfer's outcome, as the PBX reports it: done, the call ends as a handoff;
        refused, the caller is told and stays with the assistant."""
        if self.transferring is None:
            return
        if status < 300:
            log.info("SIP transfer made (%d)", status)
            self._line.finish("handoff")
            return
        log.warning("SIP transfer refused (%d); the call stays with the assistant", status)
        self.transferring.cancel()
        self.transferring = None
        await session.say(self._settings.transfer_failed_message)

    async def send_audio(self, data: bytes) -> None:
        if self._call.over:
            raise CallClosed()
        if self._call.playout is not None:
            self._call.playout.add(data)

    async def mark(self, turn: int, position_ms: int) -> None:
        if self._call.playout is not None:
            self._call.playout.mark(turn, position_ms)

    def played_ms(self, turn: int) -> int | None:
        return self._call.reports.played_ms(turn)

    async def played(self, turn: int, position_ms: int) -> None:
        await self._call.reports.reached(turn, position_ms)


def add_sip(app: web.Application) -> None:
    """Start the SIP user agent with the app when `sip.listen` is set (and stop it after)."""
    if app[SERVICES].settings.sip.listen is None:
        return
    app.on_startup.append(_start_agent)
    app.on_cleanup.append(_stop_agent)


def sip_port(app: web.Application) -> int:
    """The port the SIP user agent listens on."""
    return app[SIP_AGENT].port


async def _start_agent(app: web.Application) -> None:
    from voice.channels.sip_agent import SipAgent

    settings = app[SERVICES].settings
    loop = asyncio.get_running_loop()
    app[SIP_CALLS] = set()

    def incoming(call: SipCall) -> None:
        task = asyncio.create_task(_serve(app, call))
        app[SIP_CALLS].add(task)
        task.add_done_callback(app[SIP_CALLS].discard)

    def refused(reason: str) -> None:
        app[METRICS].refused.labels(reason).inc()

    agent = SipAgent(
        settings.sip, loop, incoming, refused, max_frames=settings.call.inbound_queue_frames
    )
    try:
        await asyncio.to_thread(agent.start)
    except RuntimeError as err:
        raise StartupError(f"SIP cannot listen on {settings.sip.listen}: {err}") from None
    app[SIP_AGENT] = agent
    if settings.sip.registrar is not None:
        app[METRICS].watch(
            "voicedesk_sip_registered",
            lambda: float(agent.registered),
            "1 while the registration with sip.registrar holds, else 0.",
        )
    log.info("SIP: listening on %s (port %d)", settings.sip.listen, agent.port)


async def _stop_agent(app: web.Application) -> None:
    calls = app[SIP_CALLS]
    for task in calls:
        task.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    await asyncio.to_thread(app[SIP_AGENT].stop)


async def _serve(app: web.Application, call: SipCall) -> None:
    """Answer `call` (or refuse it: 503 while shutting down, 486 when every line is taken),
    serve it, and hang up if the caller has not."""
    call_id = uuid.uuid4().hex[:12]
    admission, metrics = app[ADMISSION], app[METRICS]
    settings = app[SERVICES].settings
    with call_scope(call_id):
        if admission.draining:
            metrics.refused.labels("shutting_down").inc()
            call.refuse(503)
            return
        if admission.active >= admission.max_calls:
            log.warning("SIP caller turned away: busy (%d calls)", admission.active)
            metrics.refused.labels("busy").inc()
            call.refuse(486)
            return
        call.answer()
        try:
            async with asyncio.timeout(settings.sip.answer_timeout_s):
                rate, codec = await call.media
        except TimeoutError:
            log.warning("SIP call's audio did not come up; ending it")
            call.hang_up()
            return
        except ConnectionError as err:
            log.info("SIP caller gone before the call started (%s)", err)
            return
        line = CallLine(address=host_of(call.peer), vouched=True)
        transport = SipTransport(call, line, settings.sip)
        start = protocol.Start(
            audio=AudioFormat("pcm16", rate),
            caller_id=caller_of(call.remote_uri),
            metadata={
                "sip_call_id": call.sip_call_id,
                "from": call.remote_uri,
                "to": call.local_uri,
                "peer": host_of(call.peer),
                "codec": codec,
            },
        )
        log.info("SIP call started from %s (%s)", host_of(call.peer), codec)
        app[LINES].add(line)
        try:
            ending = await serve_call(
                app,
                StartedCall(call_id, start, "sip", transfers=bool(settings.sip.transfer_to)),
                line,
                transport,
                lambda session, ending: _receive(call, transport, session, ending),
            )
        finally:
            app[LINES].discard(line)
            if transport.transferring is not None:
                transport.transferring.cancel()
            call.hang_up()
        if call.dropped_frames:
            log.warning("SIP call lost %d caller frames (server behind)", call.dropped_frames)
        log.info("SIP call ended: %s", ending.reason)


async def _receive(
    call: SipCall, transport: SipTransport, session: CallSession, ending: Ending
) -> None:
    """Read what the SIP side says of `call` into the session until the call is over."""
    while True:
        news = await call.news.get()
        if isinstance(news, Heard):
            await session.on_audio(news.audio)
        elif isinstance(news, Keyed):
            if news.digit in protocol.DIGITS:
                await session.on_key(news.digit)
        elif isinstance(news, Transferred) and news.final:
            await transport.transferred(news.status, session)
        elif isinstance(news, Gone):
            # The PBX hangs up on us once it has taken the caller on.
            ending.reason = "handoff" if transport.transferring is not None else news.reason
            return
