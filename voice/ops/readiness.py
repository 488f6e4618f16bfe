"""What `/readyz` and `/metrics` tell about the models and the answer backend: whether calls can
be taken now, and why not."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from agent.selection import breaker_state
from voice.office.backoffice import OFFICE
from voice.ops.line import ADMISSION, LINES, SERVICES
from voice.ops.metrics import Metrics


def readiness(app: web.Application) -> dict[str, Any]:
    """{"ready", "full", "draining", "models", "answers", "calls", "connections"}, and "live" on
    a shared floor (this server's name there, whether Redis answers, the servers on it): ready
    when every model has a worker running (or is loaded in the server), the server is not shutting
    down, and it holds fewer than `limits.max_calls` calls — so that a load balancer in front of
    several servers sends the next caller to one that can take them. The answer backend never
    makes the server unready: without it, answers come from the knowledge base."""
    services, admission = app[SERVICES], app[ADMISSION]
    models = {
        "asr": _model_state(services.transcriber),
        "tts": _model_state(services.synthesizer),
    }
    full = admission.active >= admission.max_calls
    ready = not admission.draining and not full and all(m["ready"] for m in models.values())
    report = {
        "ready": ready,
        "full": full,
        "draining": admission.draining,
        "models": models,
        "answers": answer_backend_state(services.agent),
        "calls": {"active": admission.active, "max": admission.max_calls},
        "connections": len(app[LINES]),
    }
    floor = app[OFFICE].floor
    if floor is not None:  # the shared floor never makes a server unready: calls go on without
        report["live"] = {"server": floor.server, "up": floor.up, "servers": len(floor.servers)}
    return report


def _model_state(model: Any) -> dict[str, Any]:
    pool = getattr(model, "pool", None)
    if pool is None:
        return {"ready": True, "where": "in the server process", "description": model.description}
    return {
        "ready": pool.alive > 0,
        "where": "worker processes",
        "description": model.description,
        "workers_alive": pool.alive,
        "restarts": pool.restarts,
    }


def answer_backend_state(agent: Any) -> dict[str, Any]:
    """Which backend writes the answers, and whether the language model is being skipped."""
    backend = getattr(agent, "backend", None)
    if backend is None:
        return {"backend": type(agent).__name__}
    state: dict[str, Any] = {"backend": getattr(backend, "name", type(backend).__name__)}
    ready = getattr(backend, "ready", None)
    if isinstance(ready, bool):
        state["model_ready"] = ready
    breaker = breaker_state(backend)
    if breaker is not None:
        state["breaker_open"] = breaker.open
        state["failures_in_a_row"] = breaker.failures_in_a_row
        state["retry_in_s"] = breaker.retry_in_s
    return state


def watch_services(metrics: Metrics, app: web.Application) -> None:
    """Gauges of the model workers and the admission, read at each scrape."""
    services, admission = app[SERVICES], app[ADMISSION]
    for stage, model in (("asr", services.transcriber), ("tts", services.synthesizer)):
        pool = getattr(model, "pool", None)
        if pool is not None:
            metrics.watch(
                f"voicedesk_{stage}_workers_alive",
                functools.partial(_attribute, pool, "alive"),
                f"{stage} worker processes running.",
            )
            metrics.watch(
                f"voicedesk_{stage}_worker_restarts",
                functools.partial(_attribute, pool, "restarts"),
                f"{stage} workers started in place of one that died.",
            )
    speech = services.speech
    metrics.watch(
        "voicedesk_speech_cache_hits",
        functools.partial(_attribute, speech, "hits"),
        "Replies' first clauses said from the speech cache.",
    )
    metrics.watch(
        "voicedesk_speech_cache_misses",
        functools.partial(_attribute, speech, "misses"),
        "Replies' first clauses synthesized because the speech cache did not hold them.",
    )
    metrics.watch(
        "voicedesk_speech_cache_bytes",
        functools.partial(_attribute, speech, "bytes"),
        "Audio held by the speech cache (tts.cache_mb).",
    )
    backend = getattr(services.agent, "backend", None)
    if backend is not None and breaker_state(backend) is not None:
        metrics.watch(
            "voicedesk_llm_skipped",
            functools.partial(_breaker_open, backend),
            "1 while the language model is skipped after failures in a row (its breaker).",
        )
    metrics.watch(
        "voicedesk_calls_max", functools.partial(_attribute, admission, "max_calls"), "max_calls."
    )
    metrics.watch(
        "voicedesk_draining",
        functools.partial(_attribute, admission, "draining"),
        "1 while shutting down.",
    )
    office = app[OFFICE]
    metrics.watch(
        "voicedesk_live_floor_up",
        lambda: float(office.floor is None or office.floor.up),
        "1 while the shared live floor's Redis answers (always 1 without one).",
    )
    metrics.watch(
        "voicedesk_live_events_dropped",
        lambda: float(office.floor.dropped if office.floor is not None else 0),
        "Call events never sent to the other servers: Redis was down too long.",
    )


def _breaker_open(backend: Any) -> float:
    state = breaker_state(backend)
    return float(state is not None and state.open)


def _attribute(source: object, name: str) -> float:
    return float(getattr(source, name))
