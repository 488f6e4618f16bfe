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
from voice.live import LiveHub
from voice.records import CallRecord, Channel, Store

if TYPE_CHECKING:
    from voice.monitor import CallMonitor
    from voice.session import CallSession

log = logging.getLogger(__name__)

DATABASE = "voicedesk.db"
RECORDINGS = "recordings"


@dataclass
class Office:
    hub: LiveHub = field(default_factory=LiveHub)
    store: Store | None = None
    """Spooled: writes never block a call. None when records are off."""
    users: Any = None
    """`voice.auth.Users`, or None when nobody can log in (records off)."""
    recordings_dir: Path | None = None
    redact: Callable[[str], str] | None = None
    calls: dict[str, CallSession] = field(default_factory=dict)
    """Live calls by id, for a supervisor to step in."""

    def monitor(
        self,
        call_id: str,
        channel: Channel,
        caller_id: str | None,
        metadata: dict[str, Any],
        caller_rate: int,
    ) -> CallMonitor:
        from voice.monitor import CallMonitor

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
    from voice.auth import Users
    from voice.redact import redact
    from voice.store import SpooledStore, SqliteStore

    data_dir = settings.server.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    recordings = data_dir / RECORDINGS if records.recordings else None
    store = SpooledStore(SqliteStore(data_dir / DATABASE, recordings_dir=data_dir / RECORDINGS))
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
