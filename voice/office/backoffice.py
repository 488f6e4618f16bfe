"""The back office of a server: the live feed, the records, the supervisors' logins, and the
live calls a supervisor can step into. One per server, used from its event loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from voice.config import Settings
from voice.office.feedback import AddressRates, FeedbackKeys
from voice.office.live import LiveHub
from voice.office.records import CallRecord, Channel, Store, TurnRecord

if TYPE_CHECKING:
    from voice.call.session import CallSession
    from voice.office.monitor import CallMonitor

log = logging.getLogger(__name__)

DATABASE = "voicedesk.db"
RECORDINGS = "recordings"


def text_call_id(session_id: str) -> str:
    """The call id under which a text-API session is kept."""
    return f"text-{session_id}"[:64]


@dataclass
class Office:
    hub: LiveHub = field(default_factory=LiveHub)
    store: Store | None = None
    """Spooled: writes never block a call. None when records are off."""
    users: Any = None
    """`voice.office.auth.Users`, or None when nobody can log in (records off)."""
    recordings_dir: Path | None = None
    redact: Callable[[str], str] | None = None
    calls: dict[str, CallSession] = field(default_factory=dict)
    """Live calls by id, for a supervisor to step in."""
    feedback_keys: FeedbackKeys = field(default_factory=FeedbackKeys)
    """Each call's feedback token, given to the caller in `ready` (or a chat reply)."""
    feedback_rates: AddressRates = field(default_factory=AddressRates)
    """Feedback posts per remote address."""
    _text_turns: dict[str, int] = field(default_factory=dict)
    """Turns so far of recent text-API sessions (the newest 10,000)."""

    def monitor(
        self,
        call_id: str,
        channel: Channel,
        caller_id: str | None,
        metadata: dict[str, Any],
        caller_rate: int,
    ) -> CallMonitor:
        from voice.office.monitor import CallMonitor
        from voice.office.redact import redact_values

        if self.redact is not None:  # a caller id or a carrier's parameter can be a number too
            caller_id = None if caller_id is None else self.redact(caller_id)
            metadata = redact_values(metadata, self.redact)
        record = CallRecord(
            call_id=call_id,
            channel=channel,
            started_at=time.time(),
            caller_id=caller_id,
            metadata=metadata,
        )
        return CallMonitor(
            record, self.hub, self.store, self.recordings_dir, caller_rate, self.redact
        )

    def record_text_turn(
        self, session_id: str, question: str, answer: dict[str, Any], at: float
    ) -> None:
        """Keep a text-API exchange: each chat session is a call on the "text" channel."""
        if self.store is None:
            return
        call_id = text_call_id(session_id)
        turn = self._text_turns.pop(call_id, 0) + 1
        self._text_turns[call_id] = turn
        if len(self._text_turns) > 10_000:
            self._text_turns.pop(next(iter(self._text_turns)))
        if turn == 1:
            self.store.start_call(CallRecord(call_id=call_id, channel="text", started_at=at))
        redact = self.redact or (lambda text: text)
        self.store.add_turn(
            TurnRecord(
                call_id=call_id,
                turn=turn,
                at=at,
                question=redact(question),
                reply=redact(answer["reply"]),
                sources=tuple(answer["sources"]),
                handoff=answer["handoff"],
                rules=tuple(answer["rules"]),
            )
        )

    def close(self) -> None:
        self.hub.close()
        if self.store is not None:
            self.store.close()


OFFICE = web.AppKey("office", Office)
"""Where a server application keeps its office."""


def open_office(settings: Settings) -> Office:
    """The back office the settings ask for: records in `server.data_dir` when enabled."""
    records = settings.records
    if not records.enabled:
        log.info("records: off")
        return Office()
    from voice.office.auth import Users
    from voice.office.redact import redact
    from voice.office.store import SpooledStore, SqliteStore

    data_dir = settings.server.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    recordings = data_dir / RECORDINGS if records.recordings else None
    store = SpooledStore(
        SqliteStore(data_dir / DATABASE, recordings_dir=data_dir / RECORDINGS),
        max_queued=records.max_waiting,
    )
    log.info(
        "records: %s%s%s",
        data_dir / DATABASE,
        f", recordings in {recordings}" if recordings else ", no recordings",
        ", redacted" if records.redact else "",
    )
    return Office(
        store=store,
        users=Users(data_dir / DATABASE, session_hours=records.session_hours),
        recordings_dir=recordings,
        redact=redact if records.redact else None,
    )
