"""The live feed: every call's events fanned out to the supervisors' consoles.

Publishing never waits: each console has a bounded queue, and a console whose queue is full
(slow or stalled) is dropped — its feed ends — so a console can never slow a call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
QUEUE_SIZE = 500
"""Events a console may fall behind by before it is dropped."""
HISTORY = 200
"""Events of each live call kept for a console that joins late."""


class Subscription(Generic[T]):
    """One reader's bounded share of a stream (a console's feed of call events, a supervisor's
    ear on a call's audio). Iterate it for items; it ends when the stream ends it. Offering
    never waits: the stream drops a reader whose queue is full."""

    def __init__(self, size: int, on_close: Callable[[Subscription[T]], None]) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue(size)
        self._on_close = on_close
        self.dropped = False
        """It fell behind (or its stream closed under it) and was ended."""

    def offer(self, item: T) -> bool:
        """Queue an item without waiting; False when the queue is full."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def end(self, dropped: bool = True) -> None:
        """No more items: the iteration ends after those queued (and at once if the queue is
        full, its oldest item making room for the end)."""
        self.dropped = dropped
        while True:  # make room for the end marker
            try:
                self._queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()

    async def __aiter__(self) -> AsyncIterator[T]:
        while (item := await self._queue.get()) is not None:
            yield item

    def close(self) -> None:
        """The reader is done: the stream forgets it."""
        self._on_close(self)


class LiveHub:
    """Fans out call events to consoles, and keeps the state of live calls for late joiners.

    One per server; use it from the event loop only. With a shared live floor
    (`voice.office.floor`), `relay` takes this server's own events to the other servers, and
    theirs come in through `receive`.
    """

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self._subscribers: set[Subscription[dict[str, Any]]] = set()
        self._queue_size = queue_size
        self._live: dict[str, list[dict[str, Any]]] = {}
        """call id → the events of that call so far (bounded per call)."""
        self.relay: Callable[[dict[str, Any]], None] | None = None
        """Takes each event of this server's calls to the other servers; never blocks."""

    def publish(self, event: dict[str, Any]) -> None:
        """Send an event of a call on this server (with a "call_id") to every console; never
        blocks."""
        self.receive(event)
        if self.relay is not None:
            self.relay(event)

    def receive(self, event: dict[str, Any]) -> None:
        """Send an event (with a "call_id") to this server's consoles; never blocks."""
        call_id = event.get("call_id")
        if event["type"] == "call.started" and call_id:
            self._live[call_id] = []
        history = self._live.get(call_id or "")
        if history is not None:
            history.append(event)
            del history[: max(0, len(history) - HISTORY)]
        if event["type"] == "call.ended" and call_id:
            self._live.pop(call_id, None)
        for subscriber in list(self._subscribers):
            if not subscriber.offer(event):
                log.warning("a supervisor console fell %d events behind; dropped", self._queue_size)
                self.unsubscribe(subscriber)
                subscriber.end()

    def subscribe(self) -> Subscription[dict[str, Any]]:
        """A new feed, starting with the events so far of every live call."""
        subscription = Subscription[dict[str, Any]](
            self._queue_size + HISTORY * len(self._live), self.unsubscribe
        )
        for events in self._live.values():
            for event in events:
                subscription.offer(event)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[dict[str, Any]]) -> None:
        self._subscribers.discard(subscription)

    @property
    def live_calls(self) -> list[str]:
        """Every live call's id (with a shared floor, those of every server)."""
        return list(self._live)

    def close(self) -> None:
        for subscriber in list(self._subscribers):
            self.unsubscribe(subscriber)
            subscriber.end()
