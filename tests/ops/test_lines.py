"""`Lines`: the connections open on the server, and waiting until there are none."""

from __future__ import annotations

import asyncio
from typing import cast

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
