"""A person takes a call: the handoff queue, listening in, taking over with one's own voice,
handing back, ending the call (docs/console.md, "A person takes the call"). Only logged-in
supervisors; the audio websocket takes pages of the server's own origin only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from voice.call.person import CallHeld, NotHolding
from voice.call.transport import CallClosed
from voice.channels.closes import CloseCode
from voice.office.backoffice import OFFICE, LiveCall
from voice.office.console import json_error, logged_in, unauthorized, until_one_ends
from voice.office.relay import gather
from voice.office.tap import CALLER, TAP_RATE, Listener
from voice.ops.access import allowed_origins, own_origin
from voice.ops.line import SERVICES

log = logging.getLogger(__name__)

ENDED_BY_SUPERVISOR = "ended_by_supervisor"
"""The end reason of a call a supervisor ended."""
MAX_MIC_FRAME_BYTES = 16_000
"""The most a microphone frame may hold: half a second at 16 kHz."""
LAST_EXCHANGES = 3
"""Exchanges of a waiting call shown in the queue."""
SEND_TIMEOUT_S = 5.0
"""A listener's page that takes no frame for this long is closed (`CloseCode.NOT_READING`)."""


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/queue", queue)
    app.router.add_post("/api/calls/{call_id}/take", take)
    app.router.add_post("/api/calls/{call_id}/handback", hand_back)
    app.router.add_post("/api/calls/{call_id}/end", end)
    app.router.add_get("/api/calls/{call_id}/audio", audio)


async def queue(request: web.Request) -> web.Response:
    """The handed-off calls waiting for a person, longest waiting first: on a shared floor,
    every server's."""
    if await logged_in(request) is None:
        return unauthorized()
    now = time.time()
    waiting = [_waiting(i, live, now) for i, live in request.app[OFFICE].waiting()]
    waiting += await gather(request, "/api/queue", "waiting")
    waiting.sort(key=lambda entry: entry["since"])
    return web.json_response({"waiting": waiting})


def _waiting(call_id: str, live: LiveCall, now: float) -> dict[str, Any]:
    attendance = live.session.attendance
    redact = live.monitor.redacted
    return {
        "call_id": call_id,
        "channel": live.channel,
        "caller_id": live.caller_id,
        "since": attendance.since,
        "waited_s": round(now - attendance.since, 1),
        "reason": attendance.reason,
        "last": [
            {"question": redact(e.question), "answer": redact(e.answer)}
            for e in live.session.memory[-LAST_EXCHANGES:]
        ],
    }


async def _live_call(request: web.Request) -> tuple[str, LiveCall]:
    """The supervisor and the live call the request names.

    Raises:
        web.HTTPUnauthorized: nobody is logged in.
        web.HTTPNotFound: the call is not live.
    """
    supervisor = await logged_in(request)
    if supervisor is None:
        raise web.HTTPUnauthorized(text=unauthorized().text, content_type="application/json")
    call_id = request.match_info["call_id"]
    live = request.app[OFFICE].calls.get(call_id)
    if live is None:
        not_live = json_error(404, "not_live", f"Call {call_id} is not live.")
        raise web.HTTPNotFound(text=not_live.text, content_type="application/json")
    return supervisor, live


async def take(request: web.Request) -> web.Response:
    """Take the call: the assistant stops and stays silent; the supervisor's microphone (on the
    audio websocket) goes to the caller. 409 `held` when another supervisor has it."""
    supervisor, live = await _live_call(request)
    try:
        await live.session.take_over(supervisor)
    except CallHeld as held:
        return web.json_response(
            {"error": {"code": "held", "message": str(held), "holder": held.holder}}, status=409
        )
    except CallClosed:
        return json_error(404, "not_live", "The call has just ended.")
    log.info("supervisor %s took call %s", supervisor[:40], live.monitor.call_id)
    return web.json_response({"ok": True, "holder": supervisor})


async def hand_back(request: web.Request) -> web.Response:
    """Give the call back to the assistant. 409 `not_holding` when another supervisor holds it
    or the assistant has it already."""
    supervisor, live = await _live_call(request)
    try:
        await live.session.hand_back(supervisor)
    except NotHolding:
        holder = live.session.attendance
        who = (
            f"{holder.name} holds this call"
            if holder.state == "person"
            else "the assistant has this call"
        )
        return json_error(409, "not_holding", f"You do not hold this call: {who}.")
    except CallClosed:
        return json_error(404, "not_live", "The call has just ended.")
    log.info("supervisor %s handed call %s back", supervisor[:40], live.monitor.call_id)
    return web.json_response({"ok": True})


async def end(request: web.Request) -> web.Response:
    """End the call; kept in its record with who did it."""
    supervisor, live = await _live_call(request)
    live.monitor.action("ended", supervisor)
    live.session.hang_up(ENDED_BY_SUPERVISOR)
    log.info("supervisor %s ended call %s", supervisor[:40], live.monitor.call_id)
    return web.json_response({"ok": True})


async def audio(request: web.Request) -> web.StreamResponse:
    """The call's audio, live, to a supervisor's page; and, while that supervisor holds the call,
    their microphone to the caller (docs/console.md, "The audio websocket")."""
    origin = request.headers.get("Origin")
    allowed = allowed_origins(request.app[SERVICES].settings.auth)
    if origin is not None and not own_origin(origin, request.host, allowed):
        log.warning("refused call audio to a page from %s", origin[:100])
        return json_error(
            403, "origin_not_allowed", "Only the console's own pages may hear or speak in calls."
        )
    supervisor, live = await _live_call(request)
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MIC_FRAME_BYTES)
    await ws.prepare(request)
    await ws.send_str(
        json.dumps(
            {
                "type": "audio",
                "call_id": live.monitor.call_id,
                "sample_rate": TAP_RATE,
                "encoding": "pcm16",
                "frames": {"1": "caller", "2": "assistant", "3": "clear"},
            }
        )
    )
    listener = live.tap.listen()
    try:
        await until_one_ends(
            "call audio to a supervisor",
            _send(ws, listener, live, supervisor),
            _speak(ws, live, supervisor),
        )
    finally:
        listener.close()
    code = CloseCode.NOT_READING if listener.dropped else CloseCode.NORMAL
    with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
        async with asyncio.timeout(2):
            await ws.close(code=code)
    return ws


async def _send(ws: web.WebSocketResponse, listener: Listener, live: LiveCall, me: str) -> None:
    """The call's frames to the page; to the supervisor holding the call, the caller's only
    (they do not hear their own voice back)."""
    try:
        async for frame in listener:
            attendance = live.session.attendance
            if frame[0] != CALLER and attendance.state == "person" and attendance.name == me:
                continue
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await ws.send_bytes(frame)
    except TimeoutError:
        listener.dropped = True
    except (ConnectionError, RuntimeError):
        pass


async def _speak(ws: web.WebSocketResponse, live: LiveCall, me: str) -> None:
    """The page's microphone frames into the call while `me` holds it; a frame from one who
    does not is refused with an error message (once until they hold it)."""
    told = False
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            try:
                await live.session.person_audio(me, message.data)
                told = False
            except NotHolding:
                if not told:
                    await ws.send_str(
                        json.dumps(
                            {
                                "type": "error",
                                "code": "not_holding",
                                "message": "Take the call before you speak in it.",
                            }
                        )
                    )
                    told = True
            except CallClosed:
                return
        elif message.type == WSMsgType.ERROR:
            return
