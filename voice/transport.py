"""How a call session reaches its caller, whatever the wire (caller protocol, phone dialect)."""

from __future__ import annotations

from typing import Protocol


class CallClosed(Exception):
    """The caller is gone or stalled; the call is being closed. Tasks that see it just stop."""


class Transport(Protocol):
    """How a session talks to its caller. Both sends raise CallClosed once the call is over."""

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...
