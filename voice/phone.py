"""`/twilio`: phone callers through a carrier speaking Twilio Media Streams (docs/phone.md);
thin I/O around `voice.twilio` and CallSession."""

from __future__ import annotations

import asyncio
import functools
import logging

from aiohttp import WSMsgType, web

from voice import protocol, twilio
from voice.config import Settings, TwilioSettings
from voice.line import SERVICES, Ending, StartedCall, WebSocketLine, answer_websocket, serve_call
from voice.protocol import ProtocolError
from voice.session import CallSession

log = logging.getLogger(__name__)


class TwilioTransport:
    """The carrier's side of a phone session. Reply audio goes out as `media` messages, each
    followed by a `mark` named "TURN:MS" (the reply's audio sent so far); the carrier echoes a
    mark once the audio before it has played, which is what the caller heard. Barge-in sends
    `clear`: the carrier then echoes every pending mark at once, and those echoes mean nothing.
    A handoff ends the stream (its words have played by then), so the carrier's call flow goes
    on to the human queue. Text events stay on the server: the console and the records."""

    def __init__(self, line: WebSocketLine, stream_sid: str) -> None:
        self._line = line
        self._sid = stream_sid
        self._played: dict[int, int] = {}
        self._cleared: set[int] = set()

    async def send_event(self, event: protocol.Event) -> None:
        if isinstance(event, protocol.Clear):
            self._cleared.add(event.turn)
            await self._line.send_str(twilio.clear(self._sid))
        elif isinstance(event, protocol.Handoff):
            log.info("handoff (%s): the stream ends and the call goes on to a person", event.by)
            self._line.finish("handoff")
        elif isinstance(event, protocol.Error):
            log.warning("phone caller not told: %s", event.code)

    async def send_audio(self, data: bytes) -> None:
        await self._line.send_str(twilio.media(self._sid, data))

    async def mark(self, turn: int, position_ms: int) -> None:
        await self._line.send_str(twilio.mark(self._sid, f"{turn}:{position_ms}"))

    def played_ms(self, turn: int) -> int | None:
        return self._played.get(turn, 0)

    def echoed(self, name: str) -> None:
        """The carrier echoed a mark: the caller has played the turn's reply up to there."""
        turn, _, position = name.partition(":")
        if not (turn.isdigit() and position.isdigit()):
            log.debug("a mark not ours: %r", name[:40])
            return
        number = int(turn)
        if number not in self._cleared:
            self._played[number] = max(self._played.get(number, 0), int(position))


async def twilio_handler(request: web.Request) -> web.StreamResponse:
    settings = request.app[SERVICES].settings
    if settings.twilio.auth_token is not None and not _signed(request, settings.twilio):
        log.warning("phone stream refused: no valid %s", twilio.SIGNATURE_HEADER)
        return web.json_response(
            {
                "error": {
                    "code": "bad_signature",
                    "message": f"A valid {twilio.SIGNATURE_HEADER} header is required.",
                }
            },
            status=403,
        )
    return await answer_websocket(request, functools.partial(_run_call, request.app), _no_words)


def _signed(request: web.Request, settings: TwilioSettings) -> bool:
    assert settings.auth_token is not None
    url = settings.public_url or f"wss://{request.host}{request.path_qs}"
    given = request.headers.get(twilio.SIGNATURE_HEADER)
    return twilio.signature_valid(settings.auth_token, [url], given)


async def _run_call(app: web.Application, line: WebSocketLine, call_id: str) -> Ending:
    services = app[SERVICES]
    stream = twilio.CarrierStream()
    try:
        begun = await _receive_stream_start(line.ws, stream, services.settings.call.start_timeout_s)
    except ProtocolError as err:
        log.warning("phone call %s refused: %s: %s", call_id, err.code, err.message)
        return Ending("error", err.close_code or twilio.CLOSE_CARRIER, err)
    parameters = begun.custom_parameters
    start = protocol.Start(
        audio=twilio.PHONE_AUDIO,
        caller_id=parameters.get("caller_id") or parameters.get("From") or parameters.get("from"),
        metadata={
            "call_sid": begun.call_sid,
            "stream_sid": begun.stream_sid,
            "parameters": parameters,
        },
    )
    log.info("phone call %s started (stream %s)", call_id, begun.stream_sid)
    transport = TwilioTransport(line, begun.stream_sid)
    ending = await serve_call(
        app,
        services,
        StartedCall(call_id, start, "phone"),
        line,
        transport,
        functools.partial(_receive_loop, line.ws, stream, services.settings, transport),
    )
    if ending.error is not None:
        log.warning(
            "phone call %s closed: %s: %s", call_id, ending.error.code, ending.error.message
        )
    return ending


async def _receive_stream_start(
    ws: web.WebSocketResponse, stream: twilio.CarrierStream, timeout_s: float
) -> twilio.StreamStart:
    """`connected` (optional) then `start`, within `timeout_s` overall."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await ws.receive()
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    raise ProtocolError(
                        "carrier_gone", "The stream closed before it started.", twilio.CLOSE_CARRIER
                    )
                parsed = stream.receive(message.data)  # refuses all but connected before start
                if isinstance(parsed, twilio.StreamStart):
                    return parsed
    except TimeoutError:
        raise protocol.start_timed_out(timeout_s) from None


async def _receive_loop(
    ws: web.WebSocketResponse,
    stream: twilio.CarrierStream,
    settings: Settings,
    transport: TwilioTransport,
    session: CallSession,
    ending: Ending,
) -> None:
    """Read the carrier's messages until `stop`, a close, or a broken message (which ends the
    call, recorded in `ending`)."""
    async for message in ws:
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            continue
        try:
            parsed = stream.receive(message.data)
            if isinstance(parsed, twilio.Media):
                if parsed.track == "inbound":
                    await _hear(session, parsed.audio, settings.call.max_frame_ms)
            elif isinstance(parsed, twilio.Mark):
                transport.echoed(parsed.name)
            elif isinstance(parsed, twilio.Dtmf):
                await session.on_key(parsed.digit)
            elif isinstance(parsed, twilio.Stop):
                return
        except ProtocolError as err:
            ending.reason, ending.close_code, ending.error = "error", twilio.CLOSE_CARRIER, err
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
