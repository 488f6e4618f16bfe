"""Back-office commands: `voicedesk user ...`, `voicedesk purge`, `voicedesk report gaps`."""

from __future__ import annotations

import getpass
import time
from typing import TextIO

from voice.config import Settings
from voice.office.backoffice import DATABASE, RECORDINGS

MIN_PASSWORD = 10


def user_add(settings: Settings, name: str, password: str | None, out: TextIO) -> int:
    """Add a supervisor. Without `password`, ask for it twice on the terminal."""
    from voice.office.auth import Users

    if password is None:
        password = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass("Again: ") != password:
            print("error: the passwords differ", file=out)
            return 1
    if len(password) < MIN_PASSWORD:
        print(f"error: use a password of at least {MIN_PASSWORD} characters", file=out)
        return 1
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        Users(settings.server.data_dir / DATABASE).add(name, password)
    except ValueError as err:
        print(f"error: {err}", file=out)
        return 1
    print(f"supervisor {name} added", file=out)
    return 0


def _no_records(settings: Settings, out: TextIO) -> bool:
    database = settings.server.data_dir / DATABASE
    if database.is_file():
        return False
    print(f"no records yet in {settings.server.data_dir} (see --data-dir)", file=out)
    return True


def user_remove(settings: Settings, name: str, out: TextIO) -> int:
    from voice.office.auth import Users

    if _no_records(settings, out):
        return 1
    removed = Users(settings.server.data_dir / DATABASE).remove(name)
    print(f"supervisor {name} removed" if removed else f"error: no supervisor {name}", file=out)
    return 0 if removed else 1


def user_list(settings: Settings, out: TextIO) -> int:
    from voice.office.auth import Users

    if _no_records(settings, out):
        return 0
    for name in Users(settings.server.data_dir / DATABASE).list():
        print(name, file=out)
    return 0


def purge(settings: Settings, out: TextIO, now: float | None = None) -> int:
    """Delete calls (and their recordings) older than `records.retention_days`."""
    from voice.office.store import SqliteStore

    if _no_records(settings, out):
        return 0
    data_dir = settings.server.data_dir
    days = settings.records.retention_days
    before = (now if now is not None else time.time()) - days * 86400
    store = SqliteStore(data_dir / DATABASE, recordings_dir=data_dir / RECORDINGS)
    try:
        deleted = store.purge(before)
    finally:
        store.close()
    print(f"{deleted} call(s) older than {days} days deleted", file=out)
    return 0


def report_gaps(settings: Settings, days: int, out: TextIO) -> int:
    """The questions the KB does not answer well: handed off, unanswered, marked unhelpful."""
    from voice.office.store import SqliteStore

    if _no_records(settings, out):
        return 0
    store = SqliteStore(settings.server.data_dir / DATABASE)
    since = time.time() - days * 86400
    try:
        questions = store.gaps(since)
        daily = store.daily(since)
    finally:
        store.close()
    print(f"Questions to add to the knowledge base (last {days} days):", file=out)
    if not questions:
        print("  none: every question was answered", file=out)
    for gap in questions:
        print(
            f"  {gap.count:>4}x  {gap.question}  "
            f"(handed off {gap.handed_off}, unhelpful {gap.unhelpful})",
            file=out,
        )
    print("\nPer day: answered / handed off / unhelpful", file=out)
    for day in daily:
        print(f"  {day.day}  {day.answered:>5} {day.handed_off:>5} {day.unhelpful:>5}", file=out)
    return 0
