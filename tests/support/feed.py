"""The server's live feed as a test or benchmark watches it: every event its `LiveHub`
publishes, as the supervisors' console gets them, with the time each was seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voice.office.live import LiveHub


@dataclass
class Feed:
    """Every event the server's live hub publishes; run `collect()` as a task. Each event gets
    "seen_at": the monotonic time it was seen."""

    hub: LiveHub
    events: list[dict[str, Any]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def collect(self) -> None:
        async for event in self.hub.subscribe():
            self.events.append({**event, "seen_at": time.monotonic()})
            self._changed.set()

    def call_id(self, caller_id: str) -> str | None:
        for event in self.events:
            if event["type"] == "call.started" and event["caller_id"] == caller_id:
                return str(event["call_id"])
        return None

    def of(self, call_id: str | None, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("call_id") == call_id and (kind is None or e["type"] == kind)
        ]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        """Return once `condition()` holds, checked as each event comes; TimeoutError after
        `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(
        self, caller_id: str, match: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        """The first event of the call from `caller_id` that `match`es, waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.of(self.call_id(caller_id)):
                    if match(event):
                        return event
                self._changed.clear()
                await self._changed.wait()
