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
from voice.office.records import LOST, CallRecord, Channel, Store

if TYPE_CHECKING:
    from voice.call.session import CallSession
    from voice.channels.chat import ChatTurn
    from voice.office.floor import Floor
    from voice.office.monitor import CallMonitor
    from voice.office.tap import AudioTap

log = logging.getLogger(__name__)

DATABASE = "voicedesk.db"
RECORDINGS = "recordings"
NO_AUDIO_RATE = 16_000
"""The caller rate a text session's watcher is given: any will do, it has no audio."""


@dataclass(frozen=True)
class LiveCall:
    """A call in progress, as the supervisors reach it."""

    session: CallSession
    monitor: CallMonitor
    """Its records: a supervisor's actions go in them."""
    tap: AudioTap
    """Its audio, for a supervisor listening in."""
    channel: Channel
    caller_id: str | None


@dataclass
class Office:
    hub: LiveHub = field(default_factory=LiveHub)
    store: Store | None = None
    """Spooled: writes never block a call. None when records are off."""
    users: Any = None
    """`voice.office.auth.Users`, or None when nobody can log in (records off)."""
    recordings_dir: Path | None = None
    redact: Callable[[str], str] | None = None
    calls: dict[str, LiveCall] = field(default_factory=dict)
    """Live calls by id, for a supervisor to step in."""
    feedback_keys: FeedbackKeys = field(default_factory=FeedbackKeys)
    """Each call's feedback token, given to the caller in `ready` (or a chat reply)."""
    feedback_rates: AddressRates = field(default_factory=AddressRates)
    """Feedback posts per remote address."""
    floor: Floor | None = None
    """The live floor shared with the other servers of a deployment (`live.url`), while this
    server is on one."""

    def waiting(self) -> list[tuple[str, LiveCall]]:
        """The handed-off calls waiting for a person (call id, call), longest waiting first."""
        found = [(i, live) for i, live in self.calls.items() if live.session.attendance.waiting]
        found.sort(key=lambda item: item[1].session.attendance.since)
        return found

    def live_ids(self) -> set[str]:
        """The ids of the calls live now: this server's, and the other servers' on a shared
        floor."""
        remote = self.floor.remote_calls() if self.floor is not None else []
        return {*self.calls, *remote}

    def monitor(
        self,
        call_id: str,
        channel: Channel,
        caller_id: str | None,
        metadata: dict[str, Any],
        caller_rate: int,
        audio: bool = True,
        started_at: float | None = None,
    ) -> CallMonitor:
        """The watcher of a call, new unless it `started_at` (Unix seconds) earlier; `audio`
        False: a call without sound (no recording)."""
        from voice.office.monitor import CallMonitor
        from voice.office.redact import redact_values

        if self.redact is not None:  # a caller id or a carrier's parameter can be a number too
            caller_id = None if caller_id is None else self.redact(caller_id)
            metadata = redact_values(metadata, self.redact)
        record = CallRecord(
            call_id=call_id,
            channel=channel,
            started_at=time.time() if started_at is None else started_at,
            caller_id=caller_id,
            metadata=metadata,
        )
        recordings = self.recordings_dir if audio else None
        return CallMonitor(record, self.hub, self.store, recordings, caller_rate, self.redact)

    def text_turn(self, turn: ChatTurn) -> CallMonitor:
        """The watcher of one message of a text-API session, kept and shown like a call's turn
        on the "text" channel: its question (`transcript.final`) and its reply (`reply.end`).
        The session's first message starts its call."""
        monitor = self.monitor(
            turn.call_id, "text", None, {}, NO_AUDIO_RATE, audio=False, started_at=turn.started_at
        )
        if turn.first:
            monitor.started()
        return monitor

    def end_text(self, call_id: str, reason: str, at: float | None = None) -> None:
        """A text-API session is over (`reason`: "idle", "server_shutdown") `at` (Unix
        seconds; None: now): its call ends in the records and on the live feed."""
        self._end_unwatched(call_id, reason, at=at)

    def lost(self, call_id: str) -> None:
        """A call whose server stopped without ending it (`voice.office.floor`): ended in the
        records, with what its server wrote of its recording, and on every console."""
        name = f"{call_id}.wav"
        found = self.recordings_dir is not None and (self.recordings_dir / name).is_file()
        self._end_unwatched(call_id, LOST, name if found else None)

    def _end_unwatched(
        self, call_id: str, reason: str, recording: str | None = None, at: float | None = None
    ) -> None:
        ended_at = time.time() if at is None else at
        if self.store is not None:
            self.store.end_call(call_id, ended_at, reason, recording)
        event = {"type": "call.ended", "call_id": call_id, "reason": reason, "at": ended_at}
        self.hub.publish(event)

    def close(self) -> None:
        self.hub.close()
        if self.store is not None:
            self.store.close()
        if self.users is not None:
            self.users.close()


OFFICE = web.AppKey("office", Office)
"""Where a server application keeps its office."""


def recordings_dir(settings: Settings) -> Path:
    """Where the recordings are: `records.recordings_dir`, else in `server.data_dir`."""
    return settings.records.recordings_dir or settings.server.data_dir / RECORDINGS


def open_office(settings: Settings) -> Office:
    """The back office the settings ask for: records in the PostgreSQL database of
    `records.url`, else in SQLite in `server.data_dir`, when enabled; recordings in
    `records.recordings_dir` (`recording/` in `server.data_dir` unless set) either way."""
    records = settings.records
    if not records.enabled:
        log.info("records: off")
        return Office()
    from voice.office.redact import redact
    from voice.office.store import SpooledStore

    data_dir = settings.server.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    recordings = recordings_dir(settings) if records.recordings else None
    store: Store
    users: Any
    if records.url:
        from voice.office.postgres import PostgresStore, PostgresUsers

        store = PostgresStore(records.url, recordings_dir=recordings_dir(settings))
        users = PostgresUsers(records.url, session_hours=records.session_hours)
        where = "PostgreSQL (records.url)"
    else:
        from voice.office.auth import Users
        from voice.office.store import SqliteStore

        store = SqliteStore(data_dir / DATABASE, recordings_dir=recordings_dir(settings))
        users = Users(data_dir / DATABASE, session_hours=records.session_hours)
        where = str(data_dir / DATABASE)
    log.info(
        "records: %s%s%s",
        where,
        f", recordings in {recordings}" if recordings else ", no recordings",
        ", redacted" if records.redact else "",
    )
    return Office(
        store=SpooledStore(store, max_queued=records.max_waiting),
        users=users,
        recordings_dir=recordings,
        redact=redact if records.redact else None,
    )
