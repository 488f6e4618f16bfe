"""The server and the back-office commands with `records.url` naming a PostgreSQL database (the
one on 127.0.0.1:5432): `voicedesk migrate`, `user add/list`, `report gaps`, `purge`, and a
real call on a socket whose turns, actions and the supervisor's login all live there."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import psycopg
import pytest

from tests.support.fakes import ScriptedAgent
from tests.support.postgres import (  # noqa: F401 (fixtures)
    empty_postgres_url,
    postgres_url,
)
from tests.support.servers import make_services
from tests.support.supervisor import supervisor
from voice.channels.codecs import AudioFormat
from voice.cli import main
from voice.config import RecordsSettings, ServerSettings, Settings
from voice.office.backoffice import DATABASE, open_office
from voice.office.postgres import MIGRATIONS
from voice.ops.server import start_server

PCM16 = AudioFormat("pcm16", 16000)
PASSWORD = "a long enough secret"


def test_the_commands_work_on_the_database(empty_postgres_url, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("VOICEDESK_RECORDS_URL", empty_postgres_url)
    monkeypatch.setenv("VOICEDESK_DATA_DIR", str(tmp_path))
    assert main(["migrate"]) == 0
    assert (
        capsys.readouterr().out == f"the records database is at schema version {len(MIGRATIONS)}\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["user", "add", "alice", "--password-stdin"]) == 0
    capsys.readouterr()
    assert main(["user", "list"]) == 0
    assert capsys.readouterr().out == "alice\n"
    assert main(["report", "gaps"]) == 0
    assert "none: every question was answered" in capsys.readouterr().out
    assert main(["purge"]) == 0
    assert capsys.readouterr().out == "0 call(s) older than 90 days deleted\n"
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    assert empty_postgres_url not in printed and "# url = (set; not shown)" in printed
    assert not (tmp_path / DATABASE).exists(), "nothing went to SQLite"


def test_a_wrong_database_is_one_line_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VOICEDESK_RECORDS_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("VOICEDESK_DATA_DIR", str(tmp_path))
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert "cannot prepare the records in the records database (records.url)" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.models
async def test_a_call_and_a_supervisor_on_postgresql(models, empty_postgres_url, tmp_path):  # noqa: F811
    from voice.clients.client import CallClient

    records = RecordsSettings(url=empty_postgres_url)
    settings = dataclasses.replace(
        Settings(), server=ServerSettings(data_dir=tmp_path), records=records
    )
    office = open_office(settings)
    office.users.add("alice", PASSWORD)
    services = make_services(models, ScriptedAgent(reply="The warranty lasts two years."))
    runner, port = await start_server(services, "127.0.0.1", 0, office)
    base = f"http://127.0.0.1:{port}"
    try:
        async with CallClient(base.replace("http", "ws") + "/call", PCM16) as call:
            await call.send_text("How long is the warranty?")
            await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
            async with supervisor(base, "alice", PASSWORD) as alice:
                status, _ = await alice.post(f"/api/calls/{call.call_id}/end")
                assert status == 200
            await call.wait_for(lambda e: e["type"] == "end", timeout=30)
        assert office.store.flush(10)
        async with supervisor(base, "alice", PASSWORD) as alice:
            status, record = await alice.get(f"/api/calls/{call.call_id}")
    finally:
        await runner.cleanup()
        office.close()
    assert status == 200 and record["end_reason"] == "ended_by_supervisor"
    assert [t["reply"] for t in record["turns"]] == ["The warranty lasts two years."]
    assert [(a["action"], a["by"]) for a in record["actions"]] == [("ended", "alice")]
    assert record["recording"] and (tmp_path / "recordings" / record["recording"]).is_file()
    with psycopg.connect(empty_postgres_url) as db:
        [(sessions,)] = db.execute("SELECT count(*) FROM sessions").fetchall()
    assert sessions == 2, "both logins are kept in the database"
    assert not (Path(tmp_path) / DATABASE).exists()
