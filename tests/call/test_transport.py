"""`PlaybackReports`: waiting for what the caller's side says it played, without polling."""

from __future__ import annotations

import asyncio

import pytest

from voice.call.transport import PlaybackReports


async def test_a_wait_ends_with_the_report_that_reaches_its_position() -> None:
    reports = PlaybackReports()
    waiting = asyncio.create_task(reports.reached(1, 1000))
    reports.report(1, 400)
    reports.report(2, 5000)  # another turn
    await asyncio.sleep(0)
    assert not waiting.done() and reports.played_ms(1) == 400
    reports.report(1, 1000)
    await asyncio.wait_for(waiting, 1)


async def test_reports_never_go_back_and_a_cleared_turn_takes_none() -> None:
    reports = PlaybackReports()
    reports.report(1, 800)
    reports.report(1, 300)  # a late echo of an earlier mark
    assert reports.played_ms(1) == 800
    reports.clear(1)
    reports.report(1, 2000)  # the carrier echoes every pending mark at a clear
    assert reports.played_ms(1) == 800
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reports.reached(1, 2000), 0.05)


async def test_several_waiters_each_end_at_their_own_position() -> None:
    reports = PlaybackReports()
    near = asyncio.create_task(reports.reached(1, 100))
    far = asyncio.create_task(reports.reached(1, 900))
    reports.report(1, 500)
    await asyncio.wait_for(near, 1)
    assert not far.done()
    reports.report(1, 900)
    await asyncio.wait_for(far, 1)
