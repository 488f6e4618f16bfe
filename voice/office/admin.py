"""Back-office commands: `voicedesk user ...`, `voicedesk purge`, `voicedesk report gaps`.

Each works on the records in `server.data_dir`, the same directory the server keeps them in
(see `voice.config.default_data_dir`), and raises `AdminError` when it cannot do what it was
asked."""

from __future__ import annotations

import getpass
import sqlite3
import time
from pathlib import Path
from typing import TextIO

from voice.config import Settings

MIN_PASSWORD = 10


class AdminError(Exception):
    """A back-office command cannot do what it was asked; the message says why, in a line."""


def _database(settings: Settings) -> Path:
    from voice.office.backoffice import DATABASE  # here, not above: the back office loads aiohttp

    return settings.server.data_dir / DATABASE


def user_add(settings: Settings, name: str, password: str | None, out: TextIO) -> int:
    """Add a supervisor. Without `password`, ask for it twice on the terminal."""
    from voice.office.auth import Users

    if password is None:
        try:
            password = getpass.getpass(f"Password for {name}: ")
            again = getpass.getpass("Again: ")
        except EOFError:
            raise AdminError("no password given") from None
        if again != password:
            raise AdminError("the passwords differ")
    if len(password) < MIN_PASSWORD:
        raise AdminError(f"use a password of at least {MIN_PASSWORD} characters")
    data_dir = settings.server.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        Users(_database(settings)).add(name, password)
    except ValueError as err:
        raise AdminError(str(err)) from None
    except (OSError, sqlite3.Error) as err:
        raise AdminError(f"cannot write to {data_dir.absolute()}: {err}") from None
    print(f"supervisor {name} added in {data_dir.absolute()}", file=out)
    return 0


def _no_records_in(settings: Settings) -> str:
    return (
        f"no records yet in {settings.server.data_dir.absolute()} (another data directory: "
        "--data-dir, VOICEDESK_DATA_DIR or server.data_dir)"
    )


def _no_records(settings: Settings, out: TextIO) -> bool:
    """True, and said on `out`, when there are no records to read yet."""
    if _database(settings).is_file():
        return False
    print(_no_records_in(settings), file=out)
    return True


def user_remove(settings: Settings, name: str, out: TextIO) -> int:
    from voice.office.auth import Users

    if not _database(settings).is_file():
        raise AdminError(_no_records_in(settings))
    if not Users(_database(settings)).remove(name):
        raise AdminError(f"no supervisor {name}")
    print(f"supervisor {name} removed", file=out)
    return 0


def user_list(settings: Settings, out: TextIO) -> int:
    from voice.office.auth import Users

    if _no_records(settings, out):
        return 0
    for name in Users(_database(settings)).list():
        print(name, file=out)
    return 0


def purge(settings: Settings, out: TextIO, now: float | None = None) -> int:
    """Delete calls (and their recordings) older than `records.retention_days`."""
    from voice.office.backoffice import RECORDINGS
    from voice.office.store import SqliteStore

    if _no_records(settings, out):
        return 0
    days = settings.records.retention_days
    before = (now if now is not None else time.time()) - days * 86400
    recordings = settings.server.data_dir / RECORDINGS
    store = SqliteStore(_database(settings), recordings_dir=recordings)
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
    store = SqliteStore(_database(settings))
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
