"""Who may call: caller tokens per endpoint, the origins whose pages may use the server, who a
request behind a proxy came from, and the warning for a server exposed without tokens. Pure
functions, plus their aiohttp middlewares."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from voice.channels.sip import Peers, host_of
from voice.config import AuthSettings, ConfigError, Settings

log = logging.getLogger(__name__)

Endpoint = Literal["call", "twilio", "chat"]
ENDPOINTS: tuple[Endpoint, ...] = ("call", "twilio", "chat")


@dataclass(frozen=True)
class CallerTokens:
    """The tokens each caller endpoint takes. Empty: no token is needed anywhere."""

    tokens: dict[str, frozenset[str]]

    @classmethod
    def parse(cls, text: str | None) -> CallerTokens:
        """From `auth.caller_tokens`: `tok` (every endpoint) or `call=tok` (that one),
        comma-separated.

        Raises:
            ConfigError: an unknown endpoint or an empty token.
        """
        if text is None or not text.strip():
            return cls({})
        shared: set[str] = set()
        own: dict[str, set[str]] = {}
        for item in text.split(","):
            item = item.strip()
            endpoint, equals, token = item.partition("=")
            if not equals:
                endpoint, token = "", item
            endpoint, token = endpoint.strip(), token.strip()
            if not token:
                raise ConfigError("auth.caller_tokens: an empty token")
            if endpoint and endpoint not in ENDPOINTS:
                raise ConfigError(
                    f"auth.caller_tokens: unknown endpoint {endpoint!r} "
                    f"(known: {', '.join(ENDPOINTS)})"
                )
            (own.setdefault(endpoint, set()) if endpoint else shared).add(token)
        return cls({e: frozenset(shared | own.get(e, set())) for e in ENDPOINTS})

    @property
    def required(self) -> bool:
        return bool(self.tokens)

    def allows(self, endpoint: Endpoint, token: str | None) -> bool:
        """Whether `token` opens `endpoint`. Constant-time in the token. When tokens are set,
        an endpoint without one of its own or a shared one is closed to everybody."""
        if not self.tokens:
            return True
        if not token:
            return False
        found = False
        for known in self.tokens.get(endpoint, frozenset()):
            given = token.encode("utf-8", "surrogateescape")  # a header aiohttp could not decode
            found |= hmac.compare_digest(known.encode(), given)
        return found


def bearer(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer …` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def origin_allowed(origin: str, host: str, allowed: Iterable[str]) -> bool:
    """A browser page from `origin` may use the server at `host` (the Host header): the
    allowed origins' pages (compared as scheme://host[:port]), and its own when it was reached
    by an IP address or `localhost`.

    A page of its own reached by another name must be allowed by name too: otherwise a page on
    any site could point its name at 127.0.0.1 once loaded (DNS rebinding) and pass as the
    server's own."""
    try:
        if _normal(origin) in {_normal(a) for a in allowed}:
            return True
        parts = urlsplit(origin)
        return bool(parts.netloc) and parts.netloc.lower() == host.lower() and _addressed(host)
    except ValueError:  # not a URL (`http://[::1`): no page of ours sends that
        return False


def own_origin(origin: str, host: str, allowed: Iterable[str]) -> bool:
    """A page of the server's own origin: `origin` names `host` (the Host header) and passes
    `origin_allowed` — reached by an address, or by a name listed in `allowed`."""
    try:
        same = urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:
        return False
    return same and origin_allowed(origin, host, allowed)


def _addressed(host: str) -> bool:
    """`host` (a Host header) names the server by address, not by a name DNS could move."""
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost" or name.endswith(".localhost"):
        return True  # browsers resolve these to loopback themselves
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _normal(origin: str) -> str:
    parts = urlsplit(origin.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def allowed_origins(settings: AuthSettings) -> tuple[str, ...]:
    """The origins of `auth.allowed_origins`.

    Raises:
        ConfigError: one is not an origin (scheme://host[:port]).
    """
    text = settings.allowed_origins or ""
    origins = tuple(o.strip() for o in text.split(",") if o.strip())
    for origin in origins:
        if not _is_origin(origin):
            raise ConfigError(f"auth.allowed_origins: {origin!r} is not an origin")
    return origins


def _is_origin(text: str) -> bool:
    try:
        parts = urlsplit(text)
        _ = parts.port  # a bad port ("…:99999") raises here
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc)


def origin_check(allowed: tuple[str, ...]) -> Middleware:
    """Middleware: a request from a browser page (it carries `Origin`) of another origin is
    refused with 403, before any handler runs. Requests without `Origin` (phones, scripts)
    pass; tokens and logins guard those."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not origin_allowed(origin, request.host, allowed):
            log.warning(
                "refused a page from origin %s on %s (not listed in auth.allowed_origins)",
                origin[:100],
                request.path,
            )
            return web.json_response(
                {
                    "error": {
                        "code": "origin_not_allowed",
                        "message": "Pages from this origin may not use this server.",
                    }
                },
                status=403,
            )
        return await handler(request)

    return check


def trusted_proxies(text: str | None) -> Peers | None:
    """The proxies of `server.trusted_proxies`, None when not set.

    Raises:
        ConfigError: an entry is not an address or a network.
    """
    if text is None or not text.strip():
        return None
    try:
        return Peers.parse(text)
    except ValueError as err:
        raise ConfigError(f"server.trusted_proxies: {err}") from None


def client_address(remote: str, forwarded: Iterable[str], trusted: Peers) -> str:
    """Who a request from `remote` came from, by its `X-Forwarded-For` headers (`forwarded`):
    read from the right, the first hop that is not a trusted proxy (the hops before it are the
    client's to write, so never believed); the leftmost when every hop is trusted; `remote`
    itself when it is not trusted or there is no header. A hop is an address, with or without
    a port ("203.0.113.7:5678", "[2001:db8::7]:443"); at one that is not, the reading stops at
    the proxy that passed it on."""
    if not trusted.allows(remote):
        return remote
    hops = [hop.strip() for header in forwarded for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = host_of(hop)
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return remote
        if not trusted.allows(address):
            return address
        remote = address
    return remote


def forwarded_for(trusted: Peers | None) -> Middleware:
    """Middleware: a request from a trusted proxy is handled as from its client
    (`client_address`), so that limits per address count callers, not the proxy."""

    @web.middleware
    async def take(request: web.Request, handler: Handler) -> web.StreamResponse:
        remote = request.remote
        if trusted is not None and remote:
            client = client_address(remote, request.headers.getall("X-Forwarded-For", ()), trusted)
            if client != remote:
                request = request.clone(remote=client)
        return await handler(request)

    return take


def exposure_warning(settings: Settings) -> str | None:
    """A warning when the server listens beyond this machine and callers need no token."""
    host = settings.server.host
    if _loopback(host) or CallerTokens.parse(settings.auth.caller_tokens).required:
        return None
    return (
        f"listening on {host}, beyond this machine, and callers need no token: anyone who can "
        "reach this port can call. Set auth.caller_tokens (VOICEDESK_AUTH_CALLER_TOKENS), "
        "or bind 127.0.0.1 behind a proxy that checks callers."
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
