"""The listening socket, before HTTP: how many connections one address may hold open, and how
long a connection may take to send its request headers or stay idle between requests.

aiohttp serves each connection with its own protocol object; `listen` puts a `_Counted` in front
of each one, which refuses an address over its cap at once (the connection is reset) and keeps
the count per address. The header deadline is aiohttp's own keep-alive timer, which runs from
the moment a connection opens and again after each response, and closes a connection that has
not completed a request by then: a silent connection and one that sends its headers a byte at
a time are closed alike. A request once read (a websocket call) is not under that deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from aiohttp import web

log = logging.getLogger(__name__)


@dataclass
class AddressCap:
    """Open connections per remote address, against `per_address`. Used from one event loop."""

    per_address: int
    on_refused: Callable[[], None] = lambda: None
    """Called for each connection refused (a metric counts them)."""
    open: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    """Connections refused since start."""

    def take(self, address: str) -> bool:
        """Count a new connection from `address`; False (and not counted) when it is over."""
        if self.open[address] >= self.per_address:
            self.refused += 1
            self.on_refused()
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


class _Counted(asyncio.Protocol):
    """One connection: counted against its address's cap, then served by aiohttp's protocol."""

    def __init__(self, inner: asyncio.Protocol, cap: AddressCap) -> None:
        self._inner = inner
        self._cap = cap
        self._address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._cap.take(address):
            if self._cap.refused == 1 or self._cap.refused % 100 == 0:
                log.warning(
                    "refused a connection from %s: it holds %d open (server.max_connections_"
                    "per_address); %d refused so far",
                    address,
                    self._cap.per_address,
                    self._cap.refused,
                )
            cast(asyncio.Transport, transport).abort()
            return
        self._address = address
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return
        self._cap.release(self._address)
        self._address = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._address is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._address is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


async def listen(
    runner: web.AppRunner, host: str, port: int, cap: AddressCap
) -> asyncio.AbstractServer:
    """Listen on `host:port` for `runner`'s application (set up already), each connection counted
    against `cap`. Close the returned server to stop listening; `runner.cleanup()` then closes
    the connections."""
    serve = runner.server
    assert serve is not None, "runner.setup() first"
    factory: Callable[[], asyncio.Protocol] = lambda: _Counted(serve(), cap)  # noqa: E731
    return await asyncio.get_running_loop().create_server(factory, host, port, reuse_address=True)


def bound_port(server: asyncio.AbstractServer) -> int:
    """The port a server listens on (the one the system chose for port 0)."""
    sockets = getattr(server, "sockets", ())
    return int(sockets[0].getsockname()[1]) if sockets else 0
