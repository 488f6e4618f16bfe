"""Stopping tasks for good: a cancellation can be swallowed by a library under an await (Python
3.11's `asyncio.wait_for` did, as a send finished), and the task then runs on. Whoever must be
sure its tasks have stopped — a call closing, the live floor leaving — cancels again whatever
still runs, and at last goes on without it, saying so in the log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

RECANCEL_S = 1.0
"""How long to wait for stopped tasks before stopping them again."""
ATTEMPTS = 5
"""How many times they are stopped before they are given up on."""


async def stop_all(running: Callable[[], set[asyncio.Future[Any]]], what: str) -> None:
    """Cancel what `running()` gives until it gives nothing (it is asked again each time: a
    task may start another as it stops), at most `ATTEMPTS` times."""
    for attempt in range(ATTEMPTS + 1):
        pending = {task for task in running() if not task.done()}
        if not pending:
            return
        if attempt == ATTEMPTS:
            log.error("%d tasks of %s would not stop; going on without them", len(pending), what)
            return
        for task in pending:
            task.cancel()
        _, stuck = await asyncio.wait(pending, timeout=RECANCEL_S)
        if stuck:  # a cancellation was swallowed somewhere: cancel them again
            log.warning("%d tasks of %s went on after being stopped", len(stuck), what)
