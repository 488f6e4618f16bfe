"""The supervisors' side of the server: login, the console page, the live feed, the records APIs,
and stepping into live calls. Everything here but `POST /api/feedback` needs a supervisor login:
a session cookie for the page, `Authorization: Bearer <token>` for the APIs."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import html
import io
import json
import logging
import math
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from voice.call.transport import CallClosed
from voice.channels.closes import CloseCode
from voice.config import ConsoleSettings
from voice.office import feedback
from voice.office.backoffice import OFFICE
from voice.office.feedback import FeedbackError
from voice.office.live import Subscription
from voice.office.login import Counts, Logins, Outcome
from voice.office.records import CallDetail, CallQuery, CallRecord
from voice.office.spool import STORE_ERRORS, is_transient
from voice.ops.access import bearer
from voice.ops.line import METRICS

log = logging.getLogger(__name__)

COOKIE = "voicedesk_session"
MAX_SEARCH_WORDS = 20
MAX_SEARCH_CHARS = 500
MAX_OFFSET = 10_000_000
"""Bounds of the history's filters; beyond them a request is refused (400 `bad_filter`)."""
WAV_HEADER_BYTES = 44
"""A recording no bigger than its header holds no audio."""
LOGINS = web.AppKey("logins", Logins)
"""The login desk; absent when nobody can log in (records off)."""
T = TypeVar("T")


def add_routes(
    app: web.Application, settings: ConsoleSettings, shared: Counts | None = None
) -> None:
    """The console's routes, on an app whose OFFICE and METRICS are set; `shared`: the login
    throttle's counts shared with the other servers."""
    users = app[OFFICE].users
    if users is not None:
        app[LOGINS] = Logins(users, settings, shared=shared)
        app.on_cleanup.append(_close_logins)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_form)
    app.router.add_post("/logout", logout)
    app.router.add_post("/api/login", login_api)
    app.router.add_get("/console", console_page)
    for name in SCRIPTS:
        app.router.add_get(f"/{name}", _script(name))
    app.router.add_get("/api/live", live_feed)
    app.router.add_get("/api/me", who_am_i)
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
    return resources.files("voice.office").joinpath("static", name).read_text(encoding="utf-8")


async def login_page(request: web.Request) -> web.Response:
    return web.Response(text=_page("login.html"), content_type="text/html")


async def login_form(request: web.Request) -> web.Response:
    form = await request.post()
    outcome = await _login(request, str(form.get("name", "")), str(form.get("password", "")))
    if outcome.token is None:
        status, _, message = _refusal(outcome)
        page = _page("login.html").replace("<!--error-->", html.escape(message))
        return web.Response(
            text=page, content_type="text/html", status=status, headers=_retry_after(outcome)
        )
    response = _see_other("/console")
    _set_session_cookie(request, response, outcome.token)
    return response


async def login_api(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        name, password = str(body["name"]), str(body["password"])
    except (ValueError, KeyError, TypeError):
        return json_error(400, "bad_request", 'Send {"name": ..., "password": ...} as JSON.')
    outcome = await _login(request, name, password)
    if outcome.token is None:
        response = json_error(*_refusal(outcome))
        response.headers.update(_retry_after(outcome))
        return response
    return web.json_response({"token": outcome.token})


async def logout(request: web.Request) -> web.Response:
    users = request.app[OFFICE].users
    token = _token(request)
    response = _see_other("/login")
    if users is not None and token:
        try:
            await asyncio.to_thread(users.logout, token)
        except STORE_ERRORS as err:
            log.error("supervisor logout failed: the supervisors' store: %s", err)
            response = json_error(
                503,
                "store_unavailable",
                "This browser is logged out, but the server could not end the session: it "
                "cannot write its records right now.",
            )
    response.del_cookie(COOKIE, path="/", secure=_secure(request), httponly=True, samesite="Strict")
    return response


def _see_other(location: str) -> web.Response:
    """A 303 redirect that can carry cookies (aiohttp deprecates returning `HTTPSeeOther`, and
    a raised one may lose its cookies in later versions)."""
    return web.Response(status=303, headers={"Location": location})


async def _login(request: web.Request, name: str, password: str) -> Outcome:
    logins = request.app.get(LOGINS)
    if logins is None:
        outcome = Outcome("wrong")
    else:
        outcome = await logins.login(name, password, request.remote)
    request.app[METRICS].logins.labels(outcome.result).inc()
    quiet = outcome.result in ("throttled", "locked", "busy")  # a flood: counted, not logged
    log.log(
        logging.DEBUG if quiet else logging.INFO,
        "supervisor login %s: %r",
        outcome.result,
        name[:40],
    )
    return outcome


_REFUSALS: dict[str, tuple[int, str, str]] = {
    "wrong": (401, "unauthorized", "Wrong name or password."),
    "throttled": (
        429,
        "login_throttled",
        "Too many wrong passwords: wait {wait} before trying again.",
    ),
    "locked": (
        429,
        "login_locked",
        "Too many wrong passwords: logins for this name or from this address are locked for "
        "{wait}.",
    ),
    "busy": (429, "login_busy", "Too many logins at once: try again in {wait}."),
    "unavailable": (
        503,
        "store_unavailable",
        "Logins are unavailable: the server cannot write its records right now. Try again later.",
    ),
}
"""Result → HTTP status, error code and message (`{wait}`: how long until a retry)."""


def _refusal(outcome: Outcome) -> tuple[int, str, str]:
    status, code, message = _REFUSALS[outcome.result]
    seconds = math.ceil(outcome.retry_after_s)
    wait = f"{seconds} s" if seconds < 120 else f"{math.ceil(seconds / 60)} minutes"
    return status, code, message.format(wait=wait)


def _retry_after(outcome: Outcome) -> dict[str, str]:
    if outcome.retry_after_s <= 0:
        return {}
    return {"Retry-After": str(math.ceil(outcome.retry_after_s))}


def _secure(request: web.Request) -> bool:
    """Whether cookies go over HTTPS only: the request came over TLS, or a TLS proxy is in front
    (`console.secure_cookies`)."""
    logins = request.app.get(LOGINS)
    return request.secure or (logins is not None and logins.settings.secure_cookies)


def _set_session_cookie(request: web.Request, response: web.Response, token: str) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), and it
    lasts as long as the session (`records.session_hours`)."""
    response.set_cookie(
        COOKIE,
        token,
        path="/",
        max_age=int(request.app[OFFICE].users.session_s),
        secure=_secure(request),
        httponly=True,
        samesite="Strict",
    )


async def _close_logins(app: web.Application) -> None:
    await app[LOGINS].close()


def _token(request: web.Request) -> str | None:
    return bearer(request) or request.cookies.get(COOKIE)


async def logged_in(request: web.Request) -> str | None:
    """Who is logged in, if anyone. Raises HTTPServiceUnavailable when the sessions cannot be
    read."""
    users = request.app[OFFICE].users
    token = _token(request)
    if users is None or not token:
        return None
    try:
        name: str | None = await asyncio.to_thread(users.user_for, token)
    except STORE_ERRORS as err:
        log.error("supervisor session check failed: the supervisors' store: %s", err)
        raise web.HTTPServiceUnavailable(
            text=json.dumps(
                {
                    "error": {
                        "code": "store_unavailable",
                        "message": "The server cannot read its records right now.",
                    }
                }
            ),
            content_type="application/json",
        ) from err
    return name


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def unauthorized() -> web.Response:
    return json_error(401, "unauthorized", "Log in as a supervisor first.")


# ---------------------------------------------------------------- the page and the live feed


async def console_page(request: web.Request) -> web.StreamResponse:
    if await logged_in(request) is None:
        raise web.HTTPFound("/login")
    return web.Response(text=_page("console.html"), content_type="text/html")


SCRIPTS = ("console.js", "console-audio.js")
"""The page's scripts in static/: the console itself, and its call-audio worklet (an
AudioWorklet module must come from the page's own origin). Nothing secret is in them, so they
are served without a login."""


def _script(name: str) -> Callable[[web.Request], Coroutine[Any, Any, web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            text=_page(name), content_type="text/javascript", headers={"Cache-Control": "no-cache"}
        )

    return serve


async def who_am_i(request: web.Request) -> web.Response:
    """`{"name"}` of the supervisor logged in: the console page tells their calls by it."""
    name = await logged_in(request)
    if name is None:
        return unauthorized()
    return web.json_response({"name": name})


async def live_feed(request: web.Request) -> web.StreamResponse:
    """Every live call's events as JSON text messages, starting with the calls in progress.

    A console that falls behind by `voice.office.live.QUEUE_SIZE` events is disconnected
    (`CloseCode.NOT_READING`)."""
    if await logged_in(request) is None:
        return unauthorized()
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    subscription = request.app[OFFICE].hub.subscribe()
    try:
        # Whichever ends first ends the feed: the hub dropped this console, a send failed, or
        # the console went away. (Waiting on the sender alone kept the handler of a closed
        # console alive until the next call event, and held up the server's shutdown.)
        await until_one_ends("live feed", _send(ws, subscription), _drain(ws))
    finally:
        subscription.close()
    return ws


async def until_one_ends(what: str, *work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until one of them ends, then cancel the others and wait for them; a failure
    of any is logged as `what` failing."""
    tasks = [asyncio.create_task(coroutine) for coroutine in work]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.error("%s failed", what, exc_info=result)


async def _send(ws: web.WebSocketResponse, subscription: Subscription[dict[str, Any]]) -> None:
    try:
        async for event in subscription:
            async with asyncio.timeout(5):
                await ws.send_str(json.dumps(event))
        if subscription.dropped:
            await ws.close(code=CloseCode.NOT_READING, message=b"too slow")
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
    """A store read, off the event loop; a store that is down answers 503, a read the store
    refuses for another reason (a bug, a query it cannot run) 500."""
    try:
        return await asyncio.to_thread(method, *args)
    except STORE_ERRORS as err:
        if not is_transient(err):
            log.exception("records read failed: %s", err)
            raise web.HTTPInternalServerError(text="The records could not be read.") from err
        log.error("records store unavailable: %s", err)
        raise web.HTTPServiceUnavailable(
            text="The call records are unavailable right now."
        ) from err


def _query(request: web.Request) -> CallQuery:
    q = request.query

    def flag(name: str) -> bool | None:
        return None if name not in q else q[name].lower() in ("1", "true", "yes")

    def whole(name: str, default: int, most: int) -> int:
        value = int(q.get(name, default))
        if not 0 <= value <= most:
            raise ValueError(f"{name} must be from 0 to {most}")
        return value

    def seconds(name: str) -> float | None:
        if name not in q:
            return None
        value = float(q[name])
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a time in Unix seconds")
        return value

    text = q.get("q") or None
    try:
        if text is not None and (
            len(text) > MAX_SEARCH_CHARS or len(text.split()) > MAX_SEARCH_WORDS
        ):
            raise ValueError(
                f"search for at most {MAX_SEARCH_WORDS} words ({MAX_SEARCH_CHARS} characters)"
            )
        return CallQuery(
            since=seconds("since"),
            until=seconds("until"),
            channel=q.get("channel") or None,  # type: ignore[arg-type]
            handoff=flag("handoff"),
            rule=q.get("rule") or None,
            text=text,
            limit=whole("limit", 100, 1000),
            offset=whole("offset", 0, MAX_OFFSET),
        )
    except ValueError as err:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"code": "bad_filter", "message": f"Bad filter: {err}."}}),
            content_type="application/json",
        ) from None


async def list_calls(request: web.Request) -> web.Response:
    if await logged_in(request) is None:
        return unauthorized()
    store, query = _store(request), _query(request)
    calls = await _read(store.calls, query)
    if request.query.get("format") == "csv":
        details = [await _read(store.call, c.call_id) for c in calls]
        return _csv([d for d in details if d is not None], "calls.csv")
    live = request.app[OFFICE].live_ids()
    return web.json_response({"calls": [_call_json(c, c.call_id in live) for c in calls]})


async def get_call(request: web.Request) -> web.Response:
    if await logged_in(request) is None:
        return unauthorized()
    call_id = request.match_info["call_id"]
    detail = await _read(_store(request).call, call_id)
    if detail is None:
        return json_error(404, "not_found", f"No call {call_id}.")
    if request.query.get("format") == "csv":
        return _csv([detail], f"call-{call_id}.csv")
    live = call_id in request.app[OFFICE].live_ids()
    return web.json_response(
        {
            **_call_json(detail.call, live),
            "turns": [dataclasses.asdict(t) for t in detail.turns],
            "feedback": [dataclasses.asdict(f) for f in detail.feedback],
            "actions": [dataclasses.asdict(a) for a in detail.actions],
        }
    )


async def get_recording(request: web.Request) -> web.StreamResponse:
    if await logged_in(request) is None:
        return unauthorized()
    office = request.app[OFFICE]
    detail = await _read(_store(request).call, request.match_info["call_id"])
    name = detail.call.recording if detail is not None else None
    if not name or office.recordings_dir is None:
        return json_error(404, "not_found", "This call has no recording.")
    path = office.recordings_dir / name
    try:
        size = path.stat().st_size if path.is_file() else 0
    except OSError:
        size = 0
    if size <= WAV_HEADER_BYTES:
        log.warning("the recording of call %s is missing or empty: %s", detail.call.call_id, path)
        return json_error(
            404,
            "recording_missing",
            "This call's recording is missing: it could not be written, or it was removed.",
        )
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


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


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A cell a spreadsheet will show, not run: text that starts like a formula (`=`, `+`, `-`,
    `@`, tab, carriage return) gets a leading `'` (OWASP's rule against CSV injection), whatever
    its column; "-5" typed by a caller becomes "'-5". Numbers, booleans and None are the
    server's own (turns, durations, never negative) and are written as they are; times are
    text from `csv_time`, which starts with a digit."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_time(unix_s: float | None) -> str:
    """A time as a spreadsheet and a person read it: ISO 8601 in UTC, to the millisecond, with
    its offset (`2025-03-14T09:26:53.589+00:00`); "" for none (a call still live)."""
    if unix_s is None:
        return ""
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds")


def _csv(details: list[CallDetail], filename: str) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_COLUMNS)
    for detail in details:
        call = detail.call
        head = [
            call.call_id,
            call.channel,
            call.caller_id or "",
            csv_time(call.started_at),
            csv_time(call.ended_at),
        ]
        for turn in detail.turns or ():
            writer.writerow(
                map(
                    csv_cell,
                    [
                        *head,
                        turn.turn,
                        csv_time(turn.at),
                        turn.question,
                        turn.reply,
                        " ".join(turn.sources),
                        turn.handoff,
                        " ".join(turn.rules),
                        turn.barge_in,
                        turn.timings_ms.get("first_audio"),
                    ],
                )
            )
        if not detail.turns:
            writer.writerow(map(csv_cell, [*head] + [""] * (len(_CSV_COLUMNS) - len(head))))
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ---------------------------------------------------------------- stepping in, feedback, gaps


async def step_in(request: web.Request) -> web.Response:
    """`say` (speak a typed message into the call), `stop` (the current answer), `handoff`."""
    supervisor = await logged_in(request)
    if supervisor is None:
        return unauthorized()
    call_id = request.match_info["call_id"]
    live = request.app[OFFICE].calls.get(call_id)
    if live is None:
        return json_error(404, "not_live", f"Call {call_id} is not live.")
    session = live.session
    action = request.path.rsplit("/", 1)[-1]
    if action == "say":
        try:
            text = str((await request.json())["text"]).strip()
        except (ValueError, KeyError, TypeError):
            text = ""
        if not text or len(text) > 1000:
            return json_error(400, "bad_request", 'Send {"text": "..."} (1 to 1000 characters).')
    try:
        if action == "say":
            await session.say(text)
        elif action == "stop":
            await session.stop_reply()
        else:
            await session.hand_off()
    except CallClosed:
        return json_error(404, "not_live", f"Call {call_id} has just ended.")
    log.info("supervisor %s: %s on call %s", supervisor[:40], action, call_id)
    return web.json_response({"ok": True})


async def post_feedback(request: web.Request) -> web.Response:
    """A turn marked helpful or not, by a supervisor or by someone who took part in the call
    (its feedback token); see `voice.office.feedback`."""
    office = request.app[OFFICE]
    address = request.remote or ""
    if not office.feedback_rates.take(address):
        response = json_error(
            429, "too_many_requests", "Too much feedback from your address; try again shortly."
        )
        response.headers["Retry-After"] = str(max(1, round(office.feedback_rates.wait_s(address))))
        return response
    try:
        record, token = feedback.parse(await _json_body(request), now=time.time())
    except FeedbackError as err:
        return json_error(err.status, err.code, err.message)
    if not office.feedback_keys.valid(record.call_id, token) and not await logged_in(request):
        return json_error(
            403,
            "not_your_call",
            "Feedback is taken for a call you took part in: send the feedback_token it was "
            "given, or log in as a supervisor.",
        )
    redact = office.redact or (lambda text: text)
    _store(request).add_feedback(dataclasses.replace(record, comment=redact(record.comment)))
    return web.json_response({"ok": True})


async def _json_body(request: web.Request) -> object:
    try:
        return await request.json()
    except ValueError:
        return None


async def gaps_report(request: web.Request) -> web.Response:
    """What to add to the KB next: questions handed off, unanswered or marked unhelpful."""
    if await logged_in(request) is None:
        return unauthorized()
    try:
        days = min(max(int(request.query.get("days", 30)), 1), 3650)
    except ValueError:
        return json_error(400, "bad_request", "days must be a whole number.")
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
