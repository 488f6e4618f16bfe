"""The terminal side of `voicedesk mic`: the conversation printed as it goes, the Enter key, and
Ctrl-C. Nothing here touches audio or the network."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

LISTENING = "listening…"
THINKING = "thinking…"
SPEAKING = "speaking…"


NAME_WIDTH = 10
"""Who speaks, padded to this width: "you:       ", "voicedesk: ", "alice:     "."""


class ConsoleView:
    """The conversation on a terminal, from the server's events: what the caller said, the reply
    as it streams, its sources, handoffs, who the caller is with once a call is handed off (on
    hold, a person by name, the assistant again), what that person said, and the state
    (listening, thinking, speaking)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.state = ""
        self.held = False
        """The call waits for a person or one holds it: the assistant does not answer."""
        self._open_line = False  # a reply is being written on the current line
        self._stopped = False  # the caller stopped the reply: the rest of its text is not shown

    def show(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "ready":
            self._line(
                f"connected (call {event.get('call_id', '?')}): speak when you are ready. "
                "Enter stops a reply; Ctrl-C hangs up."
            )
            self.set_state(LISTENING)
        elif kind == "transcript.final" and not event.get("ignored"):
            self._line(_said("you", event.get("text", "")))
            if not self.held:  # on hold, nobody answers it
                self.set_state(THINKING)
        elif kind == "reply.text" and not self._stopped:
            if self.state != SPEAKING:
                self.set_state(SPEAKING)
                self.out.write(_said("voicedesk", ""))
            self.out.write(str(event.get("text", "")))
            self.out.flush()
            self._open_line = True
        elif kind == "reply.end":
            self._reply_end(event)
        elif kind == "handoff":
            who = "handoff by a supervisor" if event.get("by") == "supervisor" else "handoff"
            self._line(f"→ {who}: a person will take over.")
        elif kind == "hold":
            self._hold(str(event.get("state", "")), str(event.get("name") or "a person"))
        elif kind == "person.said":
            self._line(_said(str(event.get("name") or "person"), event.get("text", "")))
        elif kind == "error":
            self._line(f"! {event.get('message', event.get('code', 'error'))}")
        elif kind == "end":
            self._line(f"call ended ({event.get('reason', '?')}).")

    def stopping(self) -> None:
        """The caller pressed Enter over the reply."""
        self._stopped = True
        self._line("(stopping the reply)")

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            hint = " (Enter to stop)" if state == SPEAKING else ""
            self._line(f"[{state}{hint}]")

    def _hold(self, state: str, name: str) -> None:
        self.held = state in ("waiting", "person")
        if state == "waiting":
            self._line("→ waiting for a person… (you are on hold)")
        elif state == "person":
            self._line(f"→ you are talking to {name}.")
        elif state == "assistant":
            self._line("→ back with the assistant.")
        elif state == "missed":
            self._line("→ nobody could take the call.")
        if self.held:
            self.set_state(LISTENING)

    def _reply_end(self, event: dict[str, Any]) -> None:
        self._stopped = False
        if self.state != SPEAKING and event.get("text"):
            self._line(_said("voicedesk", event["text"]))
        self._line(f"  sources: {', '.join(event.get('sources') or []) or '-'}")
        if event.get("interrupted"):
            self._line(f"  (stopped; heard: {event.get('heard', '')!r})")
        self.set_state(LISTENING)

    def _line(self, text: str) -> None:
        if self._open_line:
            self.out.write("\n")
            self._open_line = False
        self.out.write(text + "\n")
        self.out.flush()


def _said(who: str, text: object) -> str:
    return f"{who + ':':<{NAME_WIDTH}} {text}"


@contextlib.contextmanager
def on_signals(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the call cleanly instead of raising in the middle of it."""
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, handler)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


@contextlib.contextmanager
def on_enter(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> Iterator[None]:
    """Calls `handler` for each line typed on stdin, when stdin is a terminal or a pipe
    (a kiosk started without one just has no Enter key)."""

    def readable() -> None:
        if not sys.stdin.readline():  # end of input: nobody will press Enter
            loop.remove_reader(fd)
            return
        handler()

    try:
        fd = sys.stdin.fileno()
        loop.add_reader(fd, readable)
    except (AttributeError, OSError, ValueError, NotImplementedError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_reader(fd)
