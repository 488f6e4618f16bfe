"""Back-office commands: `voicedesk user ...`, `voicedesk purge`, `voicedesk report gaps`,
`voicedesk migrate`.

Each works on the records where the server keeps them: the PostgreSQL database of
`records.url` when it is set, else SQLite in `server.data_dir` (see
`voice.config.default_data_dir`); and raises `AdminError` when it cannot do what it was asked."""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import Any, TextIO

from voice.config import Settings
from voice.office.spool import STORE_ERRORS, one_line

MIN_PASSWORD = 10


class AdminError(Exception):
    """A back-office command cannot do what it was asked; the message says why, in a line."""


def _database(settings: Settings) -> Path:
    from voice.office.backoffice import DATABASE  # here, not above: the back office loads aiohttp

    return settings.server.data_dir / DATABASE


def _where(settings: Settings) -> str:
    """Where the records are, in words."""
    if settings.records.url:
        return "the records database (records.url)"
    return str(settings.server.data_dir.absolute())


def _users(settings: Settings) -> Any:
    """The supervisors' logins where the server keeps them (`voice.office.auth.Users` or
    `voice.office.postgres.PostgresUsers`); close it after use."""
    if settings.records.url:
        from voice.office.postgres import PostgresUsers

        return PostgresUsers(settings.records.url)
    from voice.office.auth import Users

    return Users(_database(settings))


def _store(settings: Settings) -> Any:
    """The call records where the server keeps them; close it after use."""
    from voice.office.backoffice import recordings_dir

    recordings = recordings_dir(settings)
    if settings.records.url:
        from voice.office.postgres import PostgresStore

        return PostgresStore(settings.records.url, recordings_dir=recordings)
    from voice.office.store import SqliteStore

    return SqliteStore(_database(settings), recordings_dir=recordings)


def user_add(settings: Settings, name: str, password: str | None, out: TextIO) -> int:
    """Add a supervisor. Without `password`, ask for it twice on the terminal."""
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
    try:
        settings.server.data_dir.mkdir(parents=True, exist_ok=True)
        users = _users(settings)
        try:
            users.add(name, password)
        finally:
            users.close()
    except ValueError as err:
        raise AdminError(str(err)) from None
    except STORE_ERRORS as err:
        raise AdminError(f"cannot write to {_where(settings)}: {one_line(err)}") from None
    print(f"supervisor {name} added in {_where(settings)}", file=out)
    return 0


def _no_records_in(settings: Settings) -> str:
    return (
        f"no records yet in {settings.server.data_dir.absolute()} (another data directory: "
        "--data-dir, VOICEDESK_DATA_DIR or server.data_dir)"
    )


def _no_records(settings: Settings, out: TextIO) -> bool:
    """True, and said on `out`, when there are no records to read yet."""
    if settings.records.url or _database(settings).is_file():
        return False
    print(_no_records_in(settings), file=out)
    return True


def user_remove(settings: Settings, name: str, out: TextIO) -> int:
    if not settings.records.url and not _database(settings).is_file():
        raise AdminError(_no_records_in(settings))
    users = _users(settings)
    try:
        removed = users.remove(name)
    finally:
        users.close()
    if not removed:
        raise AdminError(f"no supervisor {name}")
    print(f"supervisor {name} removed", file=out)
    return 0


def user_list(settings: Settings, out: TextIO) -> int:
    if _no_records(settings, out):
        return 0
    users = _users(settings)
    try:
        names = users.list()
    finally:
        users.close()
    for name in names:
        print(name, file=out)
    return 0


def migrate(settings: Settings, out: TextIO) -> int:
    """Create or upgrade the records' schema (the server does it at start too)."""
    try:
        if settings.records.url:
            from voice.office.postgres import migrate as migrate_postgres

            version = migrate_postgres(settings.records.url)
            print(f"the records database is at schema version {version}", file=out)
            return 0
        settings.server.data_dir.mkdir(parents=True, exist_ok=True)
        _store(settings).close()
        _users(settings).close()
    except STORE_ERRORS as err:
        raise AdminError(
            f"cannot prepare the records in {_where(settings)}: {one_line(err)}"
        ) from None
    print(f"the records in {_where(settings)} are up to date", file=out)
    return 0


def purge(settings: Settings, out: TextIO, now: float | None = None) -> int:
    """Delete calls (and their recordings) older than `records.retention_days`."""
    if _no_records(settings, out):
        return 0
    days = settings.records.retention_days
    before = (now if now is not None else time.time()) - days * 86400
    store = _store(settings)
    try:
        deleted = store.purge(before)
    finally:
        store.close()
    print(f"{deleted} call(s) older than {days} days deleted", file=out)
    return 0


def report_gaps(settings: Settings, days: int, out: TextIO) -> int:
    """The questions the KB does not answer well: handed off, unanswered, marked unhelpful."""
    if _no_records(settings, out):
        return 0
    store = _store(settings)
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
