"""A person takes a call, in-process without the speech models: the handoff puts the call on
hold in the queue, a supervisor takes it and speaks, hands it back, or nobody comes. The same
paths through the real server, models and a browser: tests/office/test_takeover*.py."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.support.fakes import FastClock, pitch, speech
from tests.support.inprocess import ANSWER, QUESTION, SAID, STOP_HZ
from voice.call.handover import HOLD, HOLD_TURN, MESSAGE, MISSED_HANDOFF
from voice.call.person import CallHeld, NotHolding
from voice.call.session import HANDBACK
from voice.channels import protocol
from voice.channels.codecs import AudioFormat, float_to_int16, int16_to_float
from voice.config import HandoffSettings, Settings
from voice.ops import stopping

MULAW = AudioFormat("mulaw", 8000)
PERSON_HZ = STOP_HZ
"""The person's stand-in speech: heard as `SAID[STOP_HZ]`."""


def settings(**handoff: object) -> Settings:
    return Settings(handoff=HandoffSettings(**handoff))  # type: ignore[arg-type]


async def handed_off(call) -> protocol.Hold:  # type: ignore[no-untyped-def]
    """Ask for a person on the keypad; the call waits once the handoff sentence played."""
    await call.session.on_key("0")
    await call.transport.wait_for(protocol.Handoff)
    return await call.transport.wait_for(protocol.Hold, lambda e: e.state == "waiting")


async def test_a_handed_off_call_waits_on_hold_and_is_not_answered(call_in):
    clock = FastClock(10.0)
    call = call_in(realtime=True, clock=clock, settings=settings(reminder_every_s=2.0))
    waiting = await handed_off(call)
    assert waiting.reason == "human_request" and waiting.at > 0
    assert call.session.attendance.state == "waiting"
    before = len(call.transport.audio)
    await clock.sleep(6.0)
    # The hold message, then chime and a reminder: all audio, none of it a turn.
    assert len(call.transport.audio) - before > 5 * 16_000 * 2
    said = call.voice.said
    assert HandoffSettings().hold_message in said and HandoffSettings().reminder_message in said
    await call.say(speech(1.6))
    final = await call.transport.wait_for(protocol.FinalTranscript, lambda e: e.text == QUESTION)
    await clock.sleep(1.0)
    assert not final.ignored
    assert call.agent.asked == [], "nobody answers automatically while the call waits"
    ends = call.transport.of(protocol.ReplyEnd)
    assert [e.backend for e in ends] == ["keypad"]


async def test_a_supervisor_takes_the_call_speaks_in_the_callers_format_and_is_heard(call_in):
    clock = FastClock(10.0)
    call = call_in(realtime=True, clock=clock, audio=MULAW)
    await handed_off(call)
    await call.session.take_over("ann")
    taken = await call.transport.wait_for(protocol.Hold, lambda e: e.state == "person")
    assert taken.name == "ann" and call.session.attendance.name == "ann"
    assert call.transport.of(protocol.Clear)[-1].turn == HOLD_TURN  # the hold audio stops
    await asyncio.sleep(0.1)
    before = len(call.transport.audio)
    voice = float_to_int16(np.concatenate([speech(1.2, PERSON_HZ), np.zeros(16_000, np.float32)]))
    for offset in range(0, len(voice), 320):  # 20 ms frames, as the console page sends them
        await call.session.person_audio("ann", voice[offset : offset + 320].tobytes())
    sent = bytes(call.transport.audio[before:])
    # μ-law at 8 kHz: one byte a sample, each frame's at once; the person's pitch kept.
    assert len(sent) == len(voice) // 2
    assert abs(pitch(int16_to_float(MULAW.decode(sent[:8000]))[1000:], 8000) - PERSON_HZ) < 10
    said = await call.transport.wait_for(protocol.PersonSaid)
    assert (said.name, said.text) == ("ann", SAID[STOP_HZ])
    assert call.agent.asked == []


async def test_only_one_person_holds_a_call(call_in):
    call = call_in(realtime=False)
    await handed_off(call)
    await call.session.take_over("ann")
    await call.session.take_over("ann")  # again: still hers, nothing changes
    with pytest.raises(CallHeld) as held:
        await call.session.take_over("bob")
    assert held.value.holder == "ann"
    with pytest.raises(NotHolding):
        await call.session.person_audio("bob", b"\x00\x00" * 320)
    with pytest.raises(NotHolding):
        await call.session.hand_back("bob")
    assert len(call.transport.of(protocol.Hold)) == 2  # waiting, then ann


async def test_handed_back_the_assistant_answers_again_remembering_the_person(call_in):
    clock = FastClock(10.0)
    call = call_in(realtime=True, clock=clock)
    await handed_off(call)
    await call.session.take_over("ann")
    await call.say(speech(1.6))  # the caller asks the person
    await call.transport.wait_for(protocol.FinalTranscript, lambda e: e.text == QUESTION)
    voice = float_to_int16(np.concatenate([speech(1.2, PERSON_HZ), np.zeros(16_000, np.float32)]))
    for offset in range(0, len(voice), 320):
        await call.session.person_audio("ann", voice[offset : offset + 320].tobytes())
    await call.transport.wait_for(protocol.PersonSaid)
    await call.session.hand_back("ann")
    back = await call.transport.wait_for(protocol.Hold, lambda e: e.state == "assistant")
    assert back.name == "ann" and call.session.attendance.answering
    spoken = await call.transport.wait_for(protocol.ReplyEnd, lambda e: e.backend == HANDBACK)
    assert spoken.text == HandoffSettings().back_message
    await call.session.on_text("and how long is the warranty")
    await call.transport.wait_for(protocol.ReplyEnd, lambda e: e.text == ANSWER)
    question, memory = call.agent.asked[-1]
    assert question == "and how long is the warranty"
    assert (QUESTION, SAID[STOP_HZ]) in [(m.question, m.answer) for m in memory]


async def test_nobody_comes_the_caller_is_asked_to_call_back_and_the_call_ends(call_in):
    clock = FastClock(20.0)
    call = call_in(realtime=True, clock=clock, settings=settings(max_wait_s=3.0))
    await handed_off(call)
    missed = await call.transport.wait_for(protocol.Hold, lambda e: e.state == "missed")
    assert missed.reason == "human_request"
    told = await call.transport.wait_for(protocol.ReplyEnd, lambda e: e.backend == HOLD)
    assert told.text == HandoffSettings().missed_message and not told.interrupted
    async with asyncio.timeout(10):
        while not call.hung_up:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert call.hung_up == [MISSED_HANDOFF]


async def test_nobody_comes_the_caller_leaves_a_message_kept_as_a_turn(call_in):
    clock = FastClock(10.0)
    config = settings(max_wait_s=1.0, when_missed="message")
    call = call_in(realtime=True, clock=clock, settings=config)
    await handed_off(call)
    await call.transport.wait_for(protocol.ReplyEnd, lambda e: e.backend == HOLD)
    await clock.sleep(0.5)  # the tone
    await call.say(speech(1.6))
    message = await call.transport.wait_for(protocol.FinalTranscript, lambda e: e.text == QUESTION)
    thanks = await call.transport.wait_for(protocol.ReplyEnd, lambda e: MESSAGE in e.rules)
    assert thanks.turn == message.turn and thanks.text == HandoffSettings().message_thanks
    async with asyncio.timeout(10):
        while not call.hung_up:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert call.hung_up == [MISSED_HANDOFF]
    assert call.agent.asked == []


async def test_a_caller_who_leaves_no_message_is_let_go(call_in):
    clock = FastClock(50.0)
    config = settings(max_wait_s=1.0, when_missed="message", message_max_s=5.0)
    call = call_in(realtime=True, clock=clock, settings=config)
    await handed_off(call)
    async with asyncio.timeout(10):
        while not call.hung_up:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert call.hung_up == [MISSED_HANDOFF]
    assert not [e for e in call.transport.of(protocol.ReplyEnd) if MESSAGE in e.rules]


async def test_a_supervisor_takes_a_call_mid_answer_and_the_answer_stops(call_in):
    clock = FastClock(5.0)
    call = call_in(realtime=True, clock=clock)
    await call.session.on_text("tell me about the warranty")
    await call.transport.wait_for(protocol.ReplyText)
    await clock.sleep(1.0)
    await call.session.take_over("ann")
    end = await call.transport.wait_for(protocol.ReplyEnd)
    assert end.interrupted and len(end.heard) < len(end.text)
    assert call.transport.of(protocol.Clear)[0].turn == end.turn
    await call.session.on_text("hello?")
    await clock.sleep(0.5)
    assert [q for q, _ in call.agent.asked] == ["tell me about the warranty"]
    assert not call.transport.of(protocol.Handoff), "taken straight from the assistant"


async def test_a_server_shutting_down_lets_the_person_finish(call_in):
    call = call_in(realtime=False)
    await handed_off(call)
    await call.session.take_over("ann")
    finishing = asyncio.create_task(call.session.finish_turn())
    await asyncio.sleep(0.2)
    assert not finishing.done(), "the person is still talking to the caller"
    await call.session.hand_back("ann")
    async with asyncio.timeout(10):
        await finishing
    assert not [e for e in call.transport.of(protocol.ReplyEnd) if e.backend == HANDBACK]


async def test_a_call_closes_even_when_a_send_swallowed_its_stop(call_in):
    """Some library under a send may swallow a cancellation that lands as the send finishes
    (Python 3.11's `asyncio.wait_for` did): the hold audio then plays on, and closing the call
    must stop it again rather than wait for it for ever."""
    call = call_in(realtime=True, clock=FastClock(10.0))
    await handed_off(call)
    swallowed: list[bool] = []
    blocked = asyncio.Event()

    async def stuck_send(data: bytes) -> None:
        blocked.set()
        try:
            await asyncio.get_running_loop().create_future()  # a send that never finishes
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed.append(True)

    call.transport.send_audio = stuck_send  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        await blocked.wait()
    async with asyncio.timeout(5):
        await call.session.close()
    assert swallowed == [True]


async def test_a_call_closes_without_a_task_that_will_not_stop(call_in, monkeypatch, caplog):
    """A task that swallows every stop would hold the line for ever: the call gives up on it
    after a few tries, says so in the log, and closes."""
    monkeypatch.setattr(stopping, "RECANCEL_S", 0.05)
    call = call_in(realtime=True, clock=FastClock(10.0))
    await handed_off(call)
    stubborn = True
    blocked = asyncio.Event()

    async def stuck_send(data: bytes) -> None:
        blocked.set()
        while True:
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                if not stubborn:
                    raise

    call.transport.send_audio = stuck_send  # type: ignore[method-assign]
    async with asyncio.timeout(5):
        await blocked.wait()
    try:
        async with asyncio.timeout(5):
            await call.session.close()
        assert "would not stop" in caplog.text
    finally:
        stubborn = False  # the test's own loop can stop it now
        await call.session.close()
