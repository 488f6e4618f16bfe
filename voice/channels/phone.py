"""`/twilio`: phone callers through a carrier speaking Twilio Media Streams (docs/phone.md);
thin I/O around `voice.channels.twilio` and CallSession."""

from __future__ import annotations

import asyncio
import functools
import logging

from aiohttp import WSMsgType, web

from voice.call.session import CallSession
from voice.call.transport import PlaybackReports
from voice.channels import protocol, twilio
from voice.channels.closes import CloseCode
from voice.channels.protocol import ProtocolError
from voice.config import CallSettings, TwilioSettings
from voice.ops.line import (
    METRICS,
    SERVICES,
    TOKENS,
    Ending,
    StartedCall,
    WebSocketLine,
    answer_websocket,
    check_size,
    header_token,
    messages,
    refusal,
    refuse_broken,
    serve_call,
)

log = logging.getLogger(__name__)


class TwilioTransport:
    """The carrier's side of a phone session. Reply audio goes out as `media` messages, each
    followed by a `mark` named "TURN:MS" (the reply's audio sent so far); the carrier echoes a
    mark once the audio before it has played, which is what the caller heard. Barge-in sends
    `clear`: the carrier then echoes every pending mark at once, and those echoes mean nothing.
    A handoff ends the stream (its words have played by then), so the carrier's call flow goes
    on to the human queue, unless `takeover`: then the call stays, for a supervisor to take in
    the stream (`twilio.handoff`). Text events stay on the server: the console and the
    records."""

    def __init__(self, line: WebSocketLine, stream_sid: str, takeover: bool = False) -> None:
        self._line = line
        self._sid = stream_sid
        self._reports = PlaybackReports()
        self.takeover = takeover

    async def send_event(self, event: protocol.Event) -> None:
        if isinstance(event, protocol.Clear):
            self._reports.clear(event.turn)
            await self._line.send_str(twilio.clear(self._sid))
        elif isinstance(event, protocol.Handoff) and not self.takeover:
            log.info("handoff (%s): the stream ends and the call goes on to a person", event.by)
            self._line.finish("handoff")
        elif isinstance(event, protocol.Error):
            log.warning("phone caller not told: %s", event.code)

    async def send_audio(self, data: bytes) -> None:
        await self._line.send_str(twilio.media(self._sid, data))

    async def mark(self, turn: int, position_ms: int) -> None:
        await self._line.send_str(twilio.mark(self._sid, f"{turn}:{position_ms}"))

    def played_ms(self, turn: int) -> int | None:
        return self._reports.played_ms(turn)

    async def played(self, turn: int, position_ms: int) -> None:
        await self._reports.reached(turn, position_ms)

    def echoed(self, name: str) -> None:
        """The carrier echoed a mark: the caller has played the turn's reply up to there."""
        turn, _, position = name.partition(":")
        if not (turn.isdigit() and position.isdigit()):
            log.debug("a mark not ours: %r", name[:40])
            return
        self._reports.report(int(turn), int(position))


async def twilio_handler(request: web.Request) -> web.StreamResponse:
    """`/twilio`: a carrier's Media Stream. When `twilio.auth_token` is set the upgrade must be
    signed; when caller tokens are set, the stream's `token` parameter (or an `Authorization:
    Bearer` header, for gateways that can send one) must hold one."""
    settings = request.app[SERVICES].settings
    if settings.twilio.auth_token is not None and not _signed(request, settings.twilio):
        log.warning("phone stream refused: no valid %s", twilio.SIGNATURE_HEADER)
        request.app[METRICS].refused.labels("unauthorized").inc()
        return refusal(
            403, "bad_signature", f"A valid {twilio.SIGNATURE_HEADER} header is required."
        )
    token, vouched = header_token(request, "twilio")
    run = functools.partial(_run_call, request.app, token)
    signed = settings.twilio.auth_token is not None
    return await answer_websocket(request, run, _no_words, vouched=vouched or signed)


def _signed(request: web.Request, settings: TwilioSettings) -> bool:
    assert settings.auth_token is not None
    url = settings.public_url or f"wss://{request.host}{request.path_qs}"
    given = request.headers.get(twilio.SIGNATURE_HEADER)
    return twilio.signature_valid(settings.auth_token, [url], given)


async def _run_call(
    app: web.Application, header_token: str | None, line: WebSocketLine, call_id: str
) -> Ending:
    limits = app[SERVICES].settings.call
    stream = twilio.CarrierStream()
    try:
        begun = await _receive_stream_start(line.ws, stream, limits)
    except ProtocolError as err:
        log.warning("phone call refused: %s: %s", err.code, err.message)
        return Ending("error", err.close_code or CloseCode.CARRIER, err)
    parameters = dict(begun.custom_parameters)
    token = parameters.pop("token", None) or header_token
    if not app[TOKENS].allows("twilio", token):
        log.warning("phone call refused: no valid caller token")
        app[METRICS].refused.labels("unauthorized").inc()
        return Ending("unauthorized", CloseCode.UNAUTHORIZED)
    start = protocol.Start(
        audio=twilio.PHONE_AUDIO,
        caller_id=parameters.get("caller_id") or parameters.get("From") or parameters.get("from"),
        metadata={
            "call_sid": begun.call_sid,
            "stream_sid": begun.stream_sid,
            "parameters": parameters,
        },
    )
    log.info("phone call started (stream %s)", begun.stream_sid)
    takeover = app[SERVICES].settings.twilio.handoff == "takeover"
    transport = TwilioTransport(line, begun.stream_sid, takeover)
    carrier = functools.partial(_carrier, line.ws, stream, limits, transport)
    ending = await serve_call(
        app,
        StartedCall(call_id, start, "phone", transfers=not takeover),
        line,
        transport,
        carrier,
        overhear=functools.partial(carrier, None, Ending()),
    )
    if ending.error is not None:
        log.warning("phone call closed: %s: %s", ending.error.code, ending.error.message)
    return ending


async def _receive_stream_start(
    ws: web.WebSocketResponse, stream: twilio.CarrierStream, limits: CallSettings
) -> twilio.StreamStart:
    """`connected` (optional) then `start`, within `start_timeout_s` overall."""
    timeout_s = limits.start_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await ws.receive()
                refuse_broken(message)
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    raise ProtocolError(
                        "carrier_gone", "The stream closed before it started.", CloseCode.CARRIER
                    )
                check_size(message, limits)
                parsed = stream.receive(message.data)  # refuses all but connected before start
                if isinstance(parsed, twilio.StreamStart):
                    return parsed
    except TimeoutError:
        raise protocol.start_timed_out(timeout_s) from None


async def _carrier(
    ws: web.WebSocketResponse,
    stream: twilio.CarrierStream,
    limits: CallSettings,
    transport: TwilioTransport,
    session: CallSession | None,
    ending: Ending,
) -> None:
    """Read the carrier's messages until `stop`, a close, or a broken message (which ends the
    call, recorded in `ending`). Without a session (a caller hearing the busy message) only the
    marks are taken."""
    try:
        async for message in messages(ws, limits):
            parsed = stream.receive(message.data)
            if isinstance(parsed, twilio.Mark):
                transport.echoed(parsed.name)
            elif isinstance(parsed, twilio.Stop):
                return
            elif session is None:
                continue
            elif isinstance(parsed, twilio.Media):
                if parsed.track == "inbound":
                    await _hear(session, parsed.audio, limits.max_frame_ms)
            elif isinstance(parsed, twilio.Dtmf):
                await session.on_key(parsed.digit)
    except ProtocolError as err:
        ending.end_with(err)
        return
    ending.reason = "disconnected"


async def _hear(session: CallSession, audio: bytes, max_frame_ms: int) -> None:
    """The caller's audio, in pieces no longer than a frame may be."""
    step = twilio.PHONE_AUDIO.frame_bytes(max_frame_ms)
    for offset in range(0, len(audio), step):
        await session.on_audio(audio[offset : offset + step])


async def _no_words(line: WebSocketLine, ending: Ending) -> None:
    """A carrier gets no last message: the close is all it reads."""


def add_routes(app: web.Application) -> None:
    app.router.add_get("/twilio", twilio_handler)
