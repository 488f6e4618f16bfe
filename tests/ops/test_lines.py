"""`Lines`: the connections open on the server, and waiting until there are none."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from voice.ops.line import Lines, WebSocketLine


async def test_emptied_waits_for_the_last_line_to_go() -> None:
    lines = Lines()
    await asyncio.wait_for(lines.emptied(), 1)  # none open: at once
    first, second = cast(WebSocketLine, object()), cast(WebSocketLine, object())
    lines.add(first)
    lines.add(second)
    waiting = asyncio.create_task(lines.emptied())
    lines.discard(first)
    await asyncio.sleep(0)
    assert not waiting.done() and list(lines) == [second] and len(lines) == 1
    lines.discard(second)
    await asyncio.wait_for(waiting, 1)


class _Socket:
    """A websocket whose sends finish when the test says so."""

    closed = False

    def __init__(self) -> None:
        self.sent = asyncio.get_running_loop().create_future()

    async def send_str(self, text: str) -> None:
        await self.sent


async def test_a_send_cancelled_as_it_finishes_is_still_cancelled() -> None:
    """A task stopped while its frame goes out must stop: the call's hold audio is stopped that
    way when a person takes the call, and a send that swallowed the cancellation kept the hold
    audio playing over the person, and the call from ever closing. The cancellation lands at
    each point of the send's finishing in turn."""
    for steps in range(8):
        socket = _Socket()
        line = WebSocketLine(cast(Any, socket), send_timeout_s=5)
        sending = asyncio.create_task(line.send_str("frame"))
        await asyncio.sleep(0)
        socket.sent.set_result(None)
        for _ in range(steps):
            await asyncio.sleep(0)
        cancelled = sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        assert sending.cancelled() or not cancelled, f"swallowed after {steps} steps"
