"""The supervisors' side of the server: login, the console page, the live feed, the records APIs,
and stepping into live calls. Everything here but `POST /api/feedback` needs a supervisor login:
a session cookie for the page, `Authorization: Bearer <token>` for the APIs."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from voice.live import Subscription
from voice.office import OFFICE
from voice.records import CallDetail, CallQuery, CallRecord, Feedback
from voice.transport import CallClosed

log = logging.getLogger(__name__)

COOKIE = "voicedesk_session"
T = TypeVar("T")


def add_routes(app: web.Application) -> None:
    """The console's routes, on an app whose OFFICE is set."""
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_form)
    app.router.add_post("/logout", logout)
    app.router.add_post("/api/login", login_api)
    app.router.add_get("/console", console_page)
    app.router.add_get("/api/live", live_feed)
    app.router.add_get("/api/calls", list_calls)
    app.router.add_get("/api/calls/{call_id}", get_call)
    app.router.add_get("/api/calls/{call_id}/recording", get_recording)
    app.router.add_post("/api/calls/{call_id}/say", step_in)
    app.router.add_post("/api/calls/{call_id}/stop", step_in)
    app.router.add_post("/api/calls/{call_id}/handoff", step_in)
    app.router.add_post("/api/feedback", post_feedback)
    app.router.add_get("/api/report/gaps", gaps_report)


# ---------------------------------------------------------------- login


def _page(name: str) -> str:
    return resources.files("voice").joinpath("static", name).read_text(encoding="utf-8")


async def login_page(request: web.Request) -> web.Response:
    return web.Response(text=_page("login.html"), content_type="text/html")


async def login_form(request: web.Request) -> web.Response:
    form = await request.post()
    token = await _login(request, str(form.get("name", "")), str(form.get("password", "")))
    if token is None:
        page = _page("login.html").replace("<!--error-->", "Wrong name or password.")
        return web.Response(text=page, content_type="text/html", status=401)
    response = _see_other("/console")
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


async def login_api(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        name, password = str(body["name"]), str(body["password"])
    except (ValueError, KeyError, TypeError):
        return _error(400, "bad_request", 'Send {"name": ..., "password": ...} as JSON.')
    token = await _login(request, name, password)
    if token is None:
        return _error(401, "unauthorized", "Wrong name or password.")
    return web.json_response({"token": token})


async def logout(request: web.Request) -> web.Response:
    users = request.app[OFFICE].users
    token = _token(request)
    if users is not None and token:
        await asyncio.to_thread(users.logout, token)
    response = _see_other("/login")
    response.del_cookie(COOKIE, path="/")
    return response


def _see_other(location: str) -> web.Response:
    """A 303 redirect that can carry cookies (aiohttp deprecates returning `HTTPSeeOther`, and
    a raised one may lose its cookies in later versions)."""
    return web.Response(status=303, headers={"Location": location})


async def _login(request: web.Request, name: str, password: str) -> str | None:
    users = request.app[OFFICE].users
    if users is None:
        return None
    token: str | None = await asyncio.to_thread(users.login, name, password)
    log.info("supervisor login %s: %s", "accepted" if token else "refused", name[:40])
    return token


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE)


async def _supervisor(request: web.Request) -> str | None:
    users = request.app[OFFICE].users
    token = _token(request)
    if users is None or not token:
        return None
    name: str | None = await asyncio.to_thread(users.user_for, token)
    return name


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _unauthorized() -> web.Response:
    return _error(401, "unauthorized", "Log in as a supervisor first.")


# ---------------------------------------------------------------- the page and the live feed


async def console_page(request: web.Request) -> web.StreamResponse:
    if await _supervisor(request) is None:
        raise web.HTTPFound("/login")
    return web.Response(text=_page("console.html"), content_type="text/html")


async def live_feed(request: web.Request) -> web.StreamResponse:
    """Every live call's events as JSON text messages, starting with the calls in progress.

    A console that falls behind by `voice.live.QUEUE_SIZE` events is disconnected (close 1013)."""
    if await _supervisor(request) is None:
        return _unauthorized()
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    subscription = request.app[OFFICE].hub.subscribe()
    sender = asyncio.create_task(_send(ws, subscription))
    reader = asyncio.create_task(_drain(ws))
    try:
        # Whichever ends first ends the feed: the hub dropped this console, a send failed, or
        # the console went away. (Waiting on the sender alone kept the handler of a closed
        # console alive until the next call event, and held up the server's shutdown.)
        await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        subscription.close()
        sender.cancel()
        reader.cancel()
        results = await asyncio.gather(sender, reader, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.error("live feed failed", exc_info=result)
    return ws


async def _send(ws: web.WebSocketResponse, subscription: Subscription) -> None:
    try:
        async for event in subscription:
            await asyncio.wait_for(ws.send_str(json.dumps(event)), 5)
        if subscription.dropped:
            await ws.close(code=1013, message=b"too slow")
    except (TimeoutError, ConnectionError, RuntimeError):
        pass


async def _drain(ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type == WSMsgType.ERROR:
            return


# ---------------------------------------------------------------- records


def _store(request: web.Request) -> Any:
    store = request.app[OFFICE].store
    if store is None:
        raise web.HTTPNotFound(text="Records are turned off on this server.")
    return store


async def _read(method: Callable[..., T], *args: Any) -> T:
    """A store read, off the event loop; a store that is down answers 503."""
    try:
        return await asyncio.to_thread(method, *args)
    except (sqlite3.Error, OSError) as err:
        log.error("records store unavailable: %s", err)
        raise web.HTTPServiceUnavailable(
            text="The call records are unavailable right now."
        ) from err


def _query(request: web.Request) -> CallQuery:
    q = request.query

    def flag(name: str) -> bool | None:
        return None if name not in q else q[name].lower() in ("1", "true", "yes")

    try:
        return CallQuery(
            since=float(q["since"]) if "since" in q else None,
            until=float(q["until"]) if "until" in q else None,
            channel=q.get("channel") or None,  # type: ignore[arg-type]
            handoff=flag("handoff"),
            rule=q.get("rule") or None,
            text=q.get("q") or None,
            limit=min(int(q.get("limit", 100)), 1000),
            offset=int(q.get("offset", 0)),
        )
    except ValueError as err:
        raise web.HTTPBadRequest(text=f"Bad filter: {err}") from None


async def list_calls(request: web.Request) -> web.Response:
    if await _supervisor(request) is None:
        return _unauthorized()
    store, query = _store(request), _query(request)
    calls = await _read(store.calls, query)
    if request.query.get("format") == "csv":
        details = [await _read(store.call, c.call_id) for c in calls]
        return _csv([d for d in details if d is not None], "calls.csv")
    live = set(request.app[OFFICE].calls)
    return web.json_response({"calls": [_call_json(c, c.call_id in live) for c in calls]})


async def get_call(request: web.Request) -> web.Response:
    if await _supervisor(request) is None:
        return _unauthorized()
    call_id = request.match_info["call_id"]
    detail = await _read(_store(request).call, call_id)
    if detail is None:
        return _error(404, "not_found", f"No call {call_id}.")
    if request.query.get("format") == "csv":
        return _csv([detail], f"call-{call_id}.csv")
    live = call_id in request.app[OFFICE].calls
    return web.json_response(
        {
            **_call_json(detail.call, live),
            "turns": [dataclasses.asdict(t) for t in detail.turns],
            "feedback": [dataclasses.asdict(f) for f in detail.feedback],
        }
    )


async def get_recording(request: web.Request) -> web.StreamResponse:
    if await _supervisor(request) is None:
        return _unauthorized()
    office = request.app[OFFICE]
    detail = await _read(_store(request).call, request.match_info["call_id"])
    name = detail.call.recording if detail is not None else None
    if not name or office.recordings_dir is None or not (office.recordings_dir / name).is_file():
        return _error(404, "not_found", "This call has no recording.")
    return web.FileResponse(office.recordings_dir / name, headers={"Content-Type": "audio/wav"})


def _call_json(call: CallRecord, live: bool) -> dict[str, Any]:
    return {**dataclasses.asdict(call), "live": live}


_CSV_COLUMNS = [
    "call_id",
    "channel",
    "caller_id",
    "started_at",
    "ended_at",
    "turn",
    "at",
    "question",
    "reply",
    "sources",
    "handoff",
    "rules",
    "barge_in",
    "first_audio_ms",
]


def _csv(details: list[CallDetail], filename: str) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_COLUMNS)
    for detail in details:
        call = detail.call
        head = [call.call_id, call.channel, call.caller_id or "", call.started_at, call.ended_at]
        for turn in detail.turns or ():
            writer.writerow(
                [
                    *head,
                    turn.turn,
                    turn.at,
                    turn.question,
                    turn.reply,
                    " ".join(turn.sources),
                    turn.handoff,
                    " ".join(turn.rules),
                    turn.barge_in,
                    turn.timings_ms.get("first_audio"),
                ]
            )
        if not detail.turns:
            writer.writerow([*head] + [""] * (len(_CSV_COLUMNS) - len(head)))
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ---------------------------------------------------------------- stepping in, feedback, gaps


async def step_in(request: web.Request) -> web.Response:
    """`say` (speak a typed message into the call), `stop` (the current answer), `handoff`."""
    supervisor = await _supervisor(request)
    if supervisor is None:
        return _unauthorized()
    call_id = request.match_info["call_id"]
    session = request.app[OFFICE].calls.get(call_id)
    if session is None:
        return _error(404, "not_live", f"Call {call_id} is not live.")
    action = request.path.rsplit("/", 1)[-1]
    if action == "say":
        try:
            text = str((await request.json())["text"]).strip()
        except (ValueError, KeyError, TypeError):
            text = ""
        if not text or len(text) > 1000:
            return _error(400, "bad_request", 'Send {"text": "..."} (1 to 1000 characters).')
    try:
        if action == "say":
            await session.say(text)
        elif action == "stop":
            await session.stop_reply()
        else:
            await session.hand_off()
    except CallClosed:
        return _error(404, "not_live", f"Call {call_id} has just ended.")
    log.info("supervisor %s: %s on call %s", supervisor[:40], action, call_id)
    return web.json_response({"ok": True})


async def post_feedback(request: web.Request) -> web.Response:
    """A turn marked helpful or not, by a supervisor or by the caller's own page."""
    try:
        body = await request.json()
        feedback = Feedback(
            call_id=str(body["call_id"])[:64],
            turn=int(body["turn"]),
            helpful=bool(body["helpful"]),
            at=time.time(),
            comment=str(body.get("comment", ""))[:1000],
        )
    except (ValueError, KeyError, TypeError):
        return _error(
            400, "bad_request", 'Send {"call_id": ..., "turn": N, "helpful": true|false} as JSON.'
        )
    _store(request).add_feedback(feedback)
    return web.json_response({"ok": True})


async def gaps_report(request: web.Request) -> web.Response:
    """What to add to the KB next: questions handed off, unanswered or marked unhelpful."""
    if await _supervisor(request) is None:
        return _unauthorized()
    try:
        days = min(max(int(request.query.get("days", 30)), 1), 3650)
    except ValueError:
        return _error(400, "bad_request", "days must be a whole number.")
    store = _store(request)
    since = time.time() - days * 86400
    questions = await _read(store.gaps, since)
    daily = await _read(store.daily, since)
    return web.json_response(
        {
            "days": days,
            "questions": [dataclasses.asdict(q) for q in questions],
            "daily": [dataclasses.asdict(d) for d in daily],
        }
    )
