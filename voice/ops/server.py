"""The server: one aiohttp app that puts the channels (`/call`, `/api/chat`, `/twilio`, the
kiosk page) and the back office (the console) on one listening socket, with `/healthz`,
`/readyz` and `/metrics` for operators."""

from __future__ import annotations

import asyncio
import logging
import socket

from aiohttp import web
from redis.exceptions import RedisError

from tts.normalize import normalize_for_speech
from voice.call.reply import prepare_first_clauses
from voice.channels import caller, kiosk, pbx, phone
from voice.config import Settings
from voice.office import console, relay, takeover
from voice.office.backoffice import OFFICE, Office
from voice.office.feedback import FeedbackKeys
from voice.office.login import Counts
from voice.office.spool import SpooledStore
from voice.ops.access import (
    CallerTokens,
    allowed_origins,
    forwarded_for,
    origin_check,
    trusted_proxies,
)
from voice.ops.admission import Admission, BusySignal
from voice.ops.line import (
    ADMISSION,
    BUSY,
    LINES,
    METRICS,
    SERVICES,
    TOKENS,
    Lines,
    drain,
)
from voice.ops.listener import AddressCap, bound_port, listen
from voice.ops.metrics import CONTENT_TYPE, Metrics
from voice.ops.readiness import readiness, watch_services
from voice.ops.services import Services

log = logging.getLogger(__name__)

LISTENING = web.AppKey("listening", list[asyncio.AbstractServer])
CONNECTIONS = web.AppKey("connections", AddressCap)
BACKGROUND = web.AppKey("background", list[asyncio.Task[None]])


async def health_handler(request: web.Request) -> web.Response:
    """`/healthz`: the server process is alive (and how many callers are connected)."""
    return web.json_response({"status": "ok", "calls": len(request.app[LINES])})


async def ready_handler(request: web.Request) -> web.Response:
    """`/readyz`: 200 when calls can be taken — models loaded (their workers running), not
    shutting down, a line free — with the answer backend's state; 503 otherwise."""
    report = readiness(request.app)
    return web.json_response(report, status=200 if report["ready"] else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def create_app(services: Services, office: Office | None = None) -> web.Application:
    settings = services.settings
    app = web.Application(
        middlewares=[
            forwarded_for(trusted_proxies(settings.server.trusted_proxies)),
            origin_check(allowed_origins(settings.auth)),
            relay.relay,
        ]
    )
    app[SERVICES] = services
    app[OFFICE] = office or Office()
    app[TOKENS] = CallerTokens.parse(settings.auth.caller_tokens)
    app[ADMISSION] = Admission(settings.limits.max_calls)
    app[METRICS] = metrics = Metrics()
    app[LINES] = Lines()
    console.add_routes(app, settings.console, _shared_counts(settings))
    takeover.add_routes(app)
    caller.add_routes(app)
    phone.add_routes(app)
    kiosk.add_routes(app)
    pbx.add_sip(app)
    app.router.add_get("/healthz", health_handler)
    app.router.add_get("/readyz", ready_handler)
    app.router.add_get("/metrics", metrics_handler)
    app[CONNECTIONS] = AddressCap(
        settings.server.max_connections_per_address,
        metrics.refused.labels("too_many_connections").inc,
    )
    app[LISTENING] = []
    watch_services(metrics, app)
    _watch_records(metrics, app[OFFICE].store)
    office = app[OFFICE]
    metrics.watch(
        "voicedesk_handoff_queue",
        lambda: float(len(office.waiting())),
        "Handed-off calls waiting for a person.",
    )
    app.on_startup.append(_prepare_busy_signal)
    app.on_startup.append(_start_background)
    app.on_shutdown.append(_stop_listening)
    app.on_shutdown.append(_close_calls)
    app.on_cleanup.append(_stop_background)
    app.on_cleanup.append(_leave_floor)
    return app


def _shared_counts(settings: Settings) -> Counts | None:
    """The login throttle's counts in the Redis of `live.url`, when the servers share one."""
    if settings.live.url is None:
        return None
    from voice.office.shared_throttle import SharedCounts

    return SharedCounts(settings.live.url, settings.live.prefix, settings.console)


def _watch_records(metrics: Metrics, store: object) -> None:
    """Gauges of the records waiting for the store, and of those dropped in an outage."""
    if not isinstance(store, SpooledStore):
        return
    metrics.watch(
        "voicedesk_records_waiting",
        lambda: float(store.pending),
        "Records written by calls and not yet in the store (more while the store is down).",
    )
    metrics.watch(
        "voicedesk_records_dropped",
        lambda: float(store.dropped),
        "Records dropped, the oldest first, because records.max_waiting waited for the store.",
    )


async def _prepare_busy_signal(app: web.Application) -> None:
    """The busy message, synthesized once, before the first caller."""
    services = app[SERVICES]
    text = services.settings.limits.busy_message
    audio = await services.synthesizer.synthesize(normalize_for_speech(text))
    app[BUSY] = BusySignal(text, audio, services.synthesizer.sample_rate)


async def _start_background(app: web.Application) -> None:
    services = app[SERVICES]
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(work()) for work in services.background]
    tasks.append(asyncio.create_task(_prepare_fixed_replies(services)))
    tasks.append(asyncio.create_task(app[METRICS].watch_loop()))
    app[BACKGROUND] = tasks


async def _prepare_fixed_replies(services: Services) -> None:
    """The replies every hotline says often, as written — the handoff, "say that another way",
    no price for that, not made out — have their first clause made into the speech cache
    while no caller waits, so that even the first caller to hear one hears it at once."""
    agent, call = services.settings.agent, services.settings.call
    texts = (
        agent.handoff_message,
        agent.rephrase_message,
        agent.price_message,
        call.not_understood_message,
    )
    try:
        await prepare_first_clauses(texts, services.synthesizer, services.speech, call)
    except Exception as err:  # a worker died: the clauses are made when first said instead
        log.warning("the fixed replies' first clauses were not made ahead: %r", err)


async def _stop_background(app: web.Application) -> None:
    for task in app[BACKGROUND]:
        task.cancel()
    await asyncio.gather(*app[BACKGROUND], return_exceptions=True)


async def _stop_listening(app: web.Application) -> None:
    for listening in app[LISTENING]:
        listening.close()


async def _join_floor(app: web.Application, host: str, port: int) -> None:
    """On the live floor of `live.url`, once the server listens on `port`."""
    from voice.office.floor import Floor

    live, office = app[SERVICES].settings.live, app[OFFICE]
    if live.url is None:
        return
    office.floor = floor = Floor(live.url, live.prefix, office.hub, office.lost)
    own = live.advertise_url or advertised_url(host, port)
    await floor.start(own, idle_s=app[SERVICES].settings.server.header_timeout_s / 2)
    try:  # a feedback token given by one server is taken by every other
        office.feedback_keys = FeedbackKeys(await floor.shared_secret("feedback"))
    except (RedisError, OSError) as err:
        log.error("feedback tokens of this server's calls are good on it alone: %s", err)


def advertised_url(host: str, port: int) -> str:
    """How other servers reach one listening on `host` and `port`: by this machine's name when
    it listens on every address."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def _leave_floor(app: web.Application) -> None:
    floor = app[OFFICE].floor
    if floor is not None:
        await floor.stop()


async def _close_calls(app: web.Application) -> None:
    """Close what is still open at cleanup (`serve` drains with a grace period first)."""
    await drain(app, grace_s=0.0)


async def start_server(
    services: Services, host: str, port: int, office: Office | None = None
) -> tuple[web.AppRunner, int]:
    """Start serving in the running loop; returns the runner (call `cleanup()`) and the port."""
    settings = services.settings.server
    app = create_app(services, office)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=settings.header_timeout_s,
    )
    await runner.setup()
    listening = await listen(runner, host, port, app[CONNECTIONS])
    app[LISTENING].append(listening)
    port = bound_port(listening)
    await _join_floor(app, host, port)
    return runner, port
