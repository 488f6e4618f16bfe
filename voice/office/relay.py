"""A supervisor's step into a call that another server holds, passed on to that server, and
the handoff queue gathered from every server (a shared live floor, `voice.office.floor`).

The supervisor's request goes on as it came — their session cookie or bearer token, the page's
origin and host — so the holding server checks it exactly as it checks its own, against the
logins every server shares (`records.url`). A request passed on carries `ROUTED` and is never
passed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from aiohttp import (
    ClientError,
    ClientSession,
    ClientTimeout,
    WSMsgType,
    WSServerHandshakeError,
    web,
)
from redis.exceptions import RedisError

from voice.channels.closes import CloseCode
from voice.office.backoffice import OFFICE
from voice.office.console import json_error, logged_in, until_one_ends

log = logging.getLogger(__name__)

ROUTED = "X-Voicedesk-Routed"
"""The header of a request one server passed to another."""
TIMEOUT_S = 10.0
"""A server that does not answer a passed request in this time fails it (502)."""
GATHER_TIMEOUT_S = 2.0
"""A server that does not give its part of the queue in this time is left out of it."""
MAX_FRAME_BYTES = 64_000
"""The largest audio frame a relayed call-audio websocket carries either way."""
STEP_IN = re.compile(r"/api/calls/([^/]+)/(say|stop|handoff|take|handback|end|audio)")
"""The requests that act on one live call."""
ABNORMAL = 1006
"""The close code a websocket reports when it was cut without a close frame."""
_FORWARDED = ("Authorization", "Cookie", "Content-Type", "Origin", "Host", "User-Agent")


@web.middleware
async def relay(request: web.Request, handler: Any) -> web.StreamResponse:
    """Pass a step into a call that another server holds on to that server."""
    floor = request.app[OFFICE].floor
    match = STEP_IN.fullmatch(request.path)
    if floor is None or match is None or ROUTED in request.headers:
        return await handler(request)
    call_id = match[1]
    if call_id in request.app[OFFICE].calls or await logged_in(request) is None:
        return await handler(request)  # here, or for nobody: answered here
    try:
        url = await floor.holder(call_id)
    except (RedisError, OSError):
        url = None  # answered here: not live
    if url is None:
        return await handler(request)
    log.info("call %s: %s passed to the server that holds it, %s", call_id, match[2], url)
    if match[2] == "audio":
        return await _relay_socket(request, url)
    return await _relay_request(request, url)


def _client(request: web.Request) -> ClientSession:
    floor = request.app[OFFICE].floor
    assert floor is not None
    return floor.client


def _headers(request: web.Request) -> dict[str, str]:
    headers = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
    headers[ROUTED] = "1"
    if request.remote:
        headers["X-Forwarded-For"] = request.remote
    return headers


async def _relay_request(request: web.Request, url: str) -> web.StreamResponse:
    client = _client(request)
    try:
        async with client.request(
            request.method,
            url + request.path_qs,
            headers=_headers(request),
            data=await request.read(),
            timeout=ClientTimeout(total=TIMEOUT_S),
            allow_redirects=False,
        ) as reply:
            body = await reply.read()
            return web.Response(body=body, status=reply.status, content_type=reply.content_type)
    except (ClientError, TimeoutError) as err:
        log.error("the server holding a call did not answer (%s): %s", url, err)
        return _unreachable()


def _unreachable() -> web.Response:
    return json_error(
        502, "server_unreachable", "The server that holds this call did not answer: try again."
    )


_HANDSHAKE_REFUSALS = {
    401: ("unauthorized", "Log in as a supervisor first."),
    403: ("origin_not_allowed", "Only the console's own pages may hear or speak in calls."),
    404: ("not_live", "The call is not live."),
}


async def _relay_socket(request: web.Request, url: str) -> web.StreamResponse:
    """The call-audio websocket, opened on the holding server and relayed frame by frame
    both ways; its close code comes back to the page."""
    page = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_FRAME_BYTES)
    if not page.can_prepare(request).ok:
        return json_error(400, "bad_request", "Open the call's audio as a websocket.")
    try:
        async with asyncio.timeout(TIMEOUT_S):
            upstream = await _client(request).ws_connect(
                url + request.path_qs,
                headers=_headers(request),
                max_msg_size=MAX_FRAME_BYTES,
                heartbeat=20.0,
            )
    except WSServerHandshakeError as err:
        refusal = _HANDSHAKE_REFUSALS.get(err.status)
        return _unreachable() if refusal is None else json_error(err.status, *refusal)
    except (ClientError, TimeoutError) as err:
        log.error("the server holding a call refused its audio (%s): %s", url, err)
        return _unreachable()
    try:
        await page.prepare(request)
        await until_one_ends("relayed call audio", _pipe(upstream, page), _pipe(page, upstream))
    finally:
        closed_with = upstream.close_code or CloseCode.NORMAL
        if closed_with == ABNORMAL:  # never sent on the wire: the holding server was cut off
            closed_with = CloseCode.INTERNAL
        await upstream.close()
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            async with asyncio.timeout(2):
                await page.close(code=closed_with)
    return page


async def _pipe(source: Any, sink: Any) -> None:
    """Frames from one websocket to the other until the source closes."""
    async for message in source:
        if message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        else:
            return


async def gather(request: web.Request, path: str, key: str) -> list[dict[str, Any]]:
    """The items under `key` of `path`'s JSON from every other server on the floor, asked as
    this request's supervisor; a server that fails or is slow is left out (logged)."""
    floor = request.app[OFFICE].floor
    if floor is None or ROUTED in request.headers:
        return []
    urls = floor.others()
    parts = await asyncio.gather(*(_part(request, url + path, key) for url in urls))
    return [item for part in parts for item in part]


async def _part(request: web.Request, url: str, key: str) -> list[dict[str, Any]]:
    try:
        async with _client(request).get(
            url,
            headers=_headers(request),
            timeout=ClientTimeout(total=GATHER_TIMEOUT_S),
            allow_redirects=False,
        ) as reply:
            reply.raise_for_status()
            items: list[dict[str, Any]] = (await reply.json())[key]
            return items
    except (ClientError, TimeoutError, ValueError, KeyError) as err:
        log.warning("left out of the handoff queue: %s did not answer (%s)", url, err)
        return []
