"""The kiosk page at `/`: a caller on the caller protocol in a browser (docs/kiosk.md).

Only static files are served here, from `voice/channels/static/`; the page itself talks to
`/call` and posts feedback to `/api/feedback`, like any other caller. Nothing needs a login."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

ASSETS = {
    "/": ("kiosk.html", "text/html"),
    "/kiosk.js": ("kiosk.js", "text/javascript"),
    "/kiosk-player.js": ("kiosk-player.js", "text/javascript"),
    "/kiosk-worklet.js": ("kiosk-worklet.js", "text/javascript"),
}
"""URL path → (file in voice/channels/static/, content type)."""

HEADERS = {
    # The page loads nothing from elsewhere: its own scripts, its own socket and API.
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
"""Sent with every asset. `no-cache`: a kiosk left running picks up a new page on reload."""


def add_routes(app: web.Application) -> None:
    """The kiosk page and its scripts."""
    for path, (name, content_type) in ASSETS.items():
        app.router.add_get(path, _serve(name, content_type))


def _serve(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        body = resources.files("voice.channels").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)

    return handler
