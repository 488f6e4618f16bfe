"""The event loop's lag in `/metrics`: a loop held up is seen, an idle one is not."""

from __future__ import annotations

import asyncio
import time

from voice.ops.metrics import LAG_PERIOD_S, Metrics


def lags(metrics: Metrics) -> tuple[float, float]:
    """(observations, seconds observed in all) of `voicedesk_event_loop_lag_seconds`."""
    found = {s.name: s.value for m in metrics.loop_lag.collect() for s in m.samples}
    return found["voicedesk_event_loop_lag_seconds_count"], found[
        "voicedesk_event_loop_lag_seconds_sum"
    ]


async def test_a_loop_held_up_shows_as_lag():
    metrics = Metrics()
    watching = asyncio.create_task(metrics.watch_loop())
    try:
        await asyncio.sleep(5 * LAG_PERIOD_S)
        count, idle_sum = lags(metrics)
        assert count >= 3
        assert idle_sum < 0.1 * count, "an idle loop is on time"
        asyncio.get_running_loop().call_soon(time.sleep, 0.4)  # a callback that holds the loop
        await asyncio.sleep(2 * LAG_PERIOD_S + 0.4)
        _, held_sum = lags(metrics)
        assert held_sum - idle_sum > 0.25
    finally:
        watching.cancel()
