"""What is kept of every call: plain records, and the small interface any store implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Channel = Literal["call", "phone", "sip", "kiosk", "text"]
LOST = "server_lost"
"""The end reason of a call whose server stopped without ending it (`voice.office.floor`)."""
"""How the caller came: the caller protocol (`/call`), a phone line (`/twilio`), the kiosk page,
or the text API."""


@dataclass(frozen=True)
class CallRecord:
    call_id: str
    channel: Channel
    started_at: float
    """Unix time, seconds."""
    caller_id: str | None = None
    ended_at: float | None = None
    """None while the call is live."""
    end_reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    recording: str | None = None
    """File name of the call's recording in the recordings folder, when there is one."""


@dataclass(frozen=True)
class TurnRecord:
    call_id: str
    turn: int
    at: float
    """Unix time the question ended (speech end detected, or the typed question came)."""
    question: str
    """The final transcript, or the typed question (redacted when redaction is on)."""
    reply: str
    """The reply as the caller heard it (redacted when redaction is on)."""
    sources: tuple[str, ...] = ()
    handoff: bool = False
    rules: tuple[str, ...] = ()
    """Guardrail rules that fired."""
    barge_in: bool = False
    """The caller interrupted this reply."""
    timings_ms: dict[str, int | None] = field(default_factory=dict)
    backend: str = ""


@dataclass(frozen=True)
class CallAction:
    """Who did what to a call besides talking: a supervisor took it, handed it back, ended it;
    nobody came (docs/console.md, "The handoff queue")."""

    call_id: str
    at: float
    """Unix time, seconds."""
    action: str
    """"waiting" (handed off, in the queue), "taken", "handed_back", "ended" (by a
    supervisor), "missed" (nobody took it in time)."""
    by: str = ""
    """The supervisor's name ("" for the server's own)."""
    detail: str = ""
    """The reason of a handoff."""


@dataclass(frozen=True)
class Feedback:
    call_id: str
    turn: int
    helpful: bool
    at: float
    comment: str = ""


@dataclass(frozen=True)
class CallQuery:
    """A filter over the call history; None means any."""

    since: float | None = None
    until: float | None = None
    channel: Channel | None = None
    handoff: bool | None = None
    """Calls with (True) or without (False) a handed-off turn."""
    rule: str | None = None
    """Calls where this guardrail rule fired; "*" for any rule."""
    text: str | None = None
    """Words to find in the questions or replies (case-insensitive)."""
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class CallDetail:
    call: CallRecord
    turns: tuple[TurnRecord, ...]
    feedback: tuple[Feedback, ...] = ()
    actions: tuple[CallAction, ...] = ()


@dataclass(frozen=True)
class GapQuestion:
    """A question callers ask that the KB does not answer well."""

    question: str
    count: int
    handed_off: int
    unhelpful: int
    last_at: float


@dataclass(frozen=True)
class DayCounts:
    day: str
    """YYYY-MM-DD (UTC)."""
    answered: int
    handed_off: int
    unhelpful: int


class Store(Protocol):
    """Where records go. Implementations: SQLite (voice/office/store.py). A store may be slow
    or fail; callers wrap it in `voice.office.spool.SpooledStore`, which never blocks or breaks a
    live call."""

    def start_call(self, call: CallRecord) -> None: ...

    def end_call(
        self, call_id: str, ended_at: float, reason: str, recording: str | None
    ) -> None: ...

    def add_turn(self, turn: TurnRecord) -> None: ...

    def add_feedback(self, feedback: Feedback) -> None: ...

    def add_action(self, action: CallAction) -> None: ...

    def calls(self, query: CallQuery) -> Sequence[CallRecord]: ...

    def call(self, call_id: str) -> CallDetail | None: ...

    def gaps(self, since: float, limit: int = 20) -> Sequence[GapQuestion]: ...

    def daily(self, since: float) -> Sequence[DayCounts]: ...

    def purge(self, before: float) -> int:
        """Delete calls that ended before `before` (and their turns, feedback, recordings'
        rows); returns how many calls were deleted."""
        ...

    def close(self) -> None: ...
