"""A reply's typed values: its timings, and an apology told apart from the writer's name."""

from __future__ import annotations

import json
import time

from voice.call.reply import APOLOGY, Reply, Script
from voice.channels import protocol
from voice.channels.protocol import Timings


def test_timings_are_noted_once_from_the_question() -> None:
    reply = Reply(turn=1, question="q", spoken_at=time.monotonic() - 10, timings=Timings(asr=40))
    reply.wrote()
    first_text = reply.timings.first_text
    assert first_text is not None and 10_000 <= first_text < 15_000  # from the question
    reply.spoken_at -= 5  # later marks of the same kind change nothing
    reply.wrote()
    reply.sounded()
    assert reply.timings.first_text == first_text and reply.timings.asr == 40
    first_audio = reply.timings.first_audio
    assert first_audio is not None and first_audio >= 15_000


def test_timings_go_out_as_the_documented_object() -> None:
    end = protocol.ReplyEnd(
        turn=1,
        text="Hi.",
        heard="Hi.",
        sources=[],
        handoff=False,
        interrupted=False,
        rules=[],
        timings_ms=Timings(first_text=5),
    )
    sent = json.loads(protocol.encode(end))["timings_ms"]
    assert sent == {"asr": None, "first_text": 5, "first_audio": None}


def test_an_apology_is_marked_as_one_whatever_its_writer_is_called() -> None:
    sorry = Script.sorry("Sorry.", handoff=True)
    assert sorry.apology and sorry.backend == APOLOGY and sorry.handoff
    assert not Script("Hello.", backend="supervisor").apology
