"""What a watched call leaves in the store, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from voice.channels import protocol
from voice.office.live import LiveHub
from voice.office.monitor import CallMonitor
from voice.office.records import CallRecord
from voice.office.store import SqliteStore


def test_a_question_whose_reply_never_began_is_kept_when_the_call_ends(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "voicedesk.db")
    moments = iter([10.0, 11.0, 12.0, 13.0])
    monitor = CallMonitor(
        CallRecord("c1", "call", 0.0), LiveHub(), store, None, 16_000, None, lambda: next(moments)
    )
    monitor.started()
    monitor.event(protocol.FinalTranscript(turn=1, text="how long is the warranty"))
    monitor.event(protocol.FinalTranscript(turn=2, text="uh", ignored=True))
    monitor.event(protocol.FinalTranscript(turn=3, text="and returns"))
    monitor.ended("hangup")  # before any reply began
    detail = store.call("c1")
    assert detail is not None
    assert [(t.turn, t.question, t.reply, t.at) for t in detail.turns] == [
        (1, "how long is the warranty", "", 10.0),
        (3, "and returns", "", 11.0),
    ]
    assert detail.call.end_reason == "hangup"
