"""The server's Prometheus metrics (`GET /metrics`): calls, turns, handoffs, guardrail hits,
barge-ins, errors, and the latency of each stage of a reply. Each server has a registry of its
own, so several servers in one process (the tests) keep their counts apart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agent import guardrails
from voice.call.observer import Unobserved
from voice.channels import protocol

CONTENT_TYPE = CONTENT_TYPE_LATEST

GUARDRAIL_RULES = frozenset(
    {
        guardrails.PROMPT_INJECTION,
        guardrails.HUMAN_REQUEST,
        guardrails.PRICE,
        guardrails.OUT_OF_SCOPE,
        guardrails.UNKNOWN_CONTACT,
        guardrails.ADVICE,
    }
)

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Seconds; 1.5 s is the end-of-speech → first-audio target."""
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
"""Seconds; a reply is sent 0.3 s ahead of the caller's playback (`call.playback_lead_ms`)."""
LAG_PERIOD_S = 0.1


def stages(timings: protocol.Timings) -> dict[str, int | None]:
    """Histogram stage → its ms (None: it did not happen): from the end of speech, or from the
    stage before."""
    return {
        "asr": timings.asr,
        "answer_first_text": _span(timings.asr, timings.first_text),
        "tts_first_audio": _span(timings.first_text, timings.first_audio),
        "end_of_speech_to_first_audio": timings.first_audio,
    }


class Metrics:
    """Counts for one server. Updated from its event loop."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        self.calls_active = Gauge(
            "voicedesk_calls_active", "Calls in progress.", ["channel"], registry=registry
        )
        self.calls = Counter(
            "voicedesk_calls",
            "Calls ended, by how they ended.",
            ["channel", "reason"],
            registry=registry,
        )
        self.refused = Counter(
            "voicedesk_calls_refused",
            "Callers turned away: busy, unauthorized, shutting_down, too_many_waiting,"
            " too_many_connections.",
            ["reason"],
            registry=registry,
        )
        self.turns = Counter(
            "voicedesk_turns",
            "Replies finished, by what wrote them.",
            ["channel", "backend"],
            registry=registry,
        )
        self.handoffs = Counter(
            "voicedesk_handoffs", "Calls handed to a person.", ["by"], registry=registry
        )
        self.queue_changes = Counter(
            "voicedesk_handoff_queue_changes",
            "Handed-off calls: waiting (joined the queue), person (taken), assistant (handed "
            "back), missed (nobody came in time).",
            ["state"],
            registry=registry,
        )
        self.guardrail_hits = Counter(
            "voicedesk_guardrail_hits", "Guardrail rules that fired.", ["rule"], registry=registry
        )
        self.fallbacks = Counter(
            "voicedesk_fallbacks",
            "Replies not written by the chosen backend (llm_fallback, server_failure).",
            ["rule"],
            registry=registry,
        )
        self.barge_ins = Counter(
            "voicedesk_barge_ins", "Replies the caller interrupted.", registry=registry
        )
        self.errors = Counter(
            "voicedesk_errors", "Error events sent to callers.", ["code"], registry=registry
        )
        self.logins = Counter(
            "voicedesk_logins",
            "Supervisor logins: ok, wrong, throttled, locked, busy, unavailable.",
            ["result"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "voicedesk_stage_seconds",
            "Latency of each stage of a spoken turn, from the detected end of speech.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.loop_lag = Histogram(
            "voicedesk_event_loop_lag_seconds",
            f"How late the event loop ran a timer set every {LAG_PERIOD_S:g} s: how long"
            " every call's audio, in and out, could have waited.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._live = _LiveCollector()
        registry.register(self._live)

    async def watch_loop(self) -> None:
        """Observe the event loop's lag (`loop_lag`) until cancelled."""
        while True:
            due = time.monotonic() + LAG_PERIOD_S
            await asyncio.sleep(LAG_PERIOD_S)
            self.loop_lag.observe(max(0.0, time.monotonic() - due))

    def watch(self, name: str, value: Callable[[], float], help_text: str) -> None:
        """Report `value()` as the gauge `name` at each scrape (worker counts, backend state)."""
        self._live.gauges[name] = (value, help_text)

    def observer(self, channel: str) -> MetricsObserver:
        return MetricsObserver(self, channel)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsObserver(Unobserved):
    """A `CallObserver` that counts one call's events (and looks at no audio)."""

    def __init__(self, metrics: Metrics, channel: str) -> None:
        self._metrics = metrics
        self._channel = channel

    def event(self, event: protocol.Event) -> None:
        m = self._metrics
        if isinstance(event, protocol.ReplyEnd):
            m.turns.labels(self._channel, event.backend or "none").inc()
            if event.interrupted and not event.continued:
                m.barge_ins.inc()
            for rule in event.rules:
                (m.guardrail_hits if rule in GUARDRAIL_RULES else m.fallbacks).labels(rule).inc()
            if event.timings_ms.asr is not None:  # a spoken turn
                for stage, ms in stages(event.timings_ms).items():
                    if ms is not None:
                        m.stage_seconds.labels(stage).observe(ms / 1000)
        elif isinstance(event, protocol.Handoff):
            m.handoffs.labels(event.by).inc()
        elif isinstance(event, protocol.Hold):
            m.queue_changes.labels(event.state).inc()
        elif isinstance(event, protocol.Error):
            m.errors.labels(event.code).inc()


def _span(begin: int | None, end: int | None) -> int | None:
    return None if begin is None or end is None else max(0, end - begin)


class _LiveCollector(Collector):
    """Gauges read at scrape time: asyncio tasks alive, and what `Metrics.watch` added."""

    def __init__(self) -> None:
        self.gauges: dict[str, tuple[Callable[[], float], str]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # scraped outside the loop
            tasks = 0
        yield GaugeMetricFamily("voicedesk_asyncio_tasks", "asyncio tasks alive.", value=tasks)
        for name, (value, help_text) in self.gauges.items():
            yield GaugeMetricFamily(name, help_text, value=value())
