"""The back-office commands (`voicedesk user`, `report gaps`, `purge`) through `main`, on a real
SQLite file of records as calls leave them."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import pytest

from agent.guardrails import HUMAN_REQUEST
from agent.selection import build_agent
from agent.types import AgentSettings, gather
from voice.cli import main
from voice.office.backoffice import DATABASE
from voice.office.records import CallRecord, TurnRecord
from voice.office.store import SqliteStore


def answered(question: str) -> TurnRecord:
    """`question` answered by the demo KB's agent, recorded as a call's monitor records it."""
    agent, _ = build_agent(AgentSettings(backend="extractive", embedding_model=""))
    reply, end = asyncio.run(gather(agent.answer(question, ())))
    return TurnRecord(
        call_id="c1",
        turn=0,
        at=time.time(),
        question=question,
        reply=reply,
        sources=tuple(end.sources),
        handoff=end.handoff,
        rules=tuple(end.rules),
        backend=end.backend,
    )


@pytest.fixture
def records(tmp_path: Path) -> Path:
    """A data directory whose one call asked for a person twice (by voice, then with the
    keypad) and asked one question the KB has no answer to."""
    store = SqliteStore(tmp_path / DATABASE)
    store.start_call(CallRecord(call_id="c1", channel="phone", started_at=time.time()))
    person = answered("Can I talk to a real person please?")
    assert person.rules == (HUMAN_REQUEST,) and person.handoff
    keypad = TurnRecord(  # as `CallSession.on_key("0")` leaves it
        call_id="c1",
        turn=0,
        at=time.time(),
        question="[keypad 0]",
        reply=person.reply,
        handoff=True,
        rules=(HUMAN_REQUEST,),
        backend="keypad",
    )
    unknown = answered("What is the capital of Mongolia?")
    assert unknown.handoff
    for number, turn in enumerate((person, keypad, unknown), 1):
        store.add_turn(TurnRecord(**{**turn.__dict__, "turn": number}))
    store.close()
    return tmp_path


def test_gaps_leave_out_asking_for_a_person_and_keypad_digits(records, capsys):
    assert main(["report", "gaps", "--data-dir", str(records)]) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if "x  " in line]
    assert listed == ["     1x  What is the capital of Mongolia?  (handed off 1, unhelpful 0)"]
    assert "person" not in out and "keypad" not in out
    day = out.splitlines()[-1].split()
    assert day[1:] == ["0", "3", "0"]  # every turn was still handed off, and is counted so


def test_failures_are_one_line_on_stderr(records, tmp_path, capsys):
    assert main(["user", "remove", "nobody", "--data-dir", str(records)]) == 1
    captured = capsys.readouterr()
    assert captured.err == "voicedesk user remove: no supervisor nobody\n"
    assert captured.out == ""
    empty = tmp_path / "empty"
    assert main(["user", "remove", "nobody", "--data-dir", str(empty)]) == 1
    assert capsys.readouterr().err.startswith(f"voicedesk user remove: no records yet in {empty}")
    assert main(["user", "list", "--data-dir", str(empty)]) == 0
    assert capsys.readouterr().out.startswith(f"no records yet in {empty}")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_users_and_purge_on_the_same_records(records, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: "a long enough secret")
    assert main(["user", "add", "alice", "--data-dir", str(records)]) == 0
    assert main(["user", "add", "alice", "--data-dir", str(records)]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["user", "list", "--data-dir", str(records)]) == 0
    assert capsys.readouterr().out == "alice\n"
    assert main(["purge", "--data-dir", str(records)]) == 0
    assert capsys.readouterr().out == "0 call(s) older than 90 days deleted\n"
