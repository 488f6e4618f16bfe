"""Phone callers for real: a simulated carrier speaking Twilio Media Streams to `/twilio` on a
loopback socket, real faster-whisper and Piper, questions spoken by the bundled voice and sent
as μ-law at 8 kHz in real time, replies played on a real-time clock with marks echoed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import pytest

from agent.types import AgentSettings, Exchange
from tests.support.carrier import SimulatedCarrier
from tests.support.fakes import FastClock, ScriptedAgent
from tests.support.feed import Feed
from tests.support.servers import make_services
from voice.call.clock import WALL_CLOCK
from voice.channels import twilio
from voice.channels.closes import CloseCode
from voice.channels.codecs import float_to_int16, int16_to_float, resample
from voice.office.backoffice import Office
from voice.ops.server import start_server

CLOCK = FastClock(3.0)
"""The calls here are paced three times faster than real time: what they check is what the
caller heard and when, measured in the audio, not how long it took."""
Carrier = functools.partial(SimulatedCarrier, clock=CLOCK)

pytestmark = pytest.mark.models

BULB = "My smart bulb keeps flashing red. What should I do?"
RETURNS = "How many days do I have to return a product?"
PERSON = "Can I talk to a real person, please?"


@dataclass
class PhoneServer:
    url: str
    feed: Feed
    agent: Any
    office: Office


@contextlib.asynccontextmanager
async def phone_server(
    models, agent, transcriber: Any = None, clock: Any = CLOCK, **sections
) -> AsyncIterator[PhoneServer]:
    office = Office()
    feed = Feed(office.hub)
    collecting = asyncio.create_task(feed.collect())
    # A carrier on the fast clock sends its 20 ms frames three times as often as in real time.
    speed = getattr(clock, "speed", 1.0)
    call = {"max_messages_per_s": 200.0 * speed, **sections.pop("call", {})}
    services = make_services(models, agent, clock, call=call, **sections)
    if transcriber is not None:
        services = dataclasses.replace(services, transcriber=transcriber)
    runner, port = await start_server(services, "127.0.0.1", 0, office)
    try:
        yield PhoneServer(f"ws://127.0.0.1:{port}/twilio", feed, agent, office)
    finally:
        await runner.cleanup()
        office.close()
        await asyncio.gather(collecting, return_exceptions=True)


@pytest.fixture(scope="module")
async def phone(models):
    from agent.selection import build_agent

    agent, _ = build_agent(AgentSettings(backend="extractive"))
    async with phone_server(models, agent) as server:
        yield server


@pytest.fixture(scope="session")
def say8k(say):
    return lambda text: say(text, rate=8000)


def transcribe(models, audio_8k: np.ndarray) -> str:
    audio = resample(int16_to_float(audio_8k), 8000, 16000).astype(np.float32)
    return models.transcriber.transcribe_blocking(audio).text


def words(text: str) -> list[str]:
    return [w.strip(".,!?").lower() for w in text.split() if w.strip(".,!?")]


async def test_a_phone_question_is_answered_and_played_to_the_end(phone, say8k, models):
    parameters = {"caller_id": "+15550101"}
    # Marks come back a second after their audio played: the reply ends on the last mark's
    # return, not when the clock says the audio is over.
    async with Carrier(phone.url, parameters=parameters, echo_lag_s=1.0) as carrier:
        await carrier.say(say8k(BULB))
        end = await phone.feed.wait_for("+15550101", lambda e: e["type"] == "reply.end")
    call_id = phone.feed.call_id("+15550101")
    final = phone.feed.of(call_id, "transcript.final")[0]
    assert "bulb" in final["text"].lower() and "red" in final["text"].lower()
    assert "troubleshooting#4.2" in end["sources"] and "2.4" in end["text"]
    assert not end["interrupted"] and end["heard"] == end["text"]
    started = phone.feed.of(call_id, "call.started")[0]
    assert started["channel"] == "phone"
    # Every reply frame was followed by a mark; each came back once its audio had played.
    media = [m for m in carrier.received if m["event"] == "media"]
    assert media and len(carrier.marks_received) == len(media)
    assert all(m["streamSid"] == carrier.stream_sid for m in carrier.received)
    assert [e.name for e in carrier.echoes] == carrier.marks_received
    assert all(e.played for e in carrier.echoes)
    last_position = int(carrier.marks_received[-1].split(":")[1])
    assert abs(carrier.played_ms() - last_position) <= 40
    assert carrier.played_ms() > 5000
    # reply.end came only once the last mark was back (a second after the audio ended).
    assert carrier.echoes[-1].at <= end["seen_at"]
    heard = words(transcribe(models, carrier.played_audio()))
    assert len(set(heard) & set(words(end["text"]))) >= len(set(words(end["text"]))) // 2, heard
    assert carrier.close_code == 1000
    ended = phone.feed.of(call_id, "call.ended")[0]
    assert ended["reason"] == "hangup"


async def test_barge_in_on_the_phone_clears_and_keeps_what_was_heard(phone, say8k):
    async with Carrier(phone.url, parameters={"caller_id": "+15550102"}) as carrier:
        await carrier.say(say8k(BULB))
        await carrier.wait_until(lambda: carrier.playback.first_audio_at is not None, timeout=30)
        await CLOCK.sleep(2.0)
        await carrier.say(say8k(RETURNS))
        second = await phone.feed.wait_for(
            "+15550102", lambda e: e["type"] == "reply.end" and not e["interrupted"]
        )
    call_id = phone.feed.call_id("+15550102")
    first = phone.feed.of(call_id, "reply.end")[0]
    assert first["interrupted"] and first["turn"] < second["turn"]
    began = carrier.playback.first_audio_at
    timeline = [
        (round(e["seen_at"] - began, 2), e["type"], e.get("turn"))
        for e in phone.feed.of(call_id)
        if e["type"] in ("speech.started", "speech.stopped", "reply.end", "transcript.final")
    ]
    assert first["heard"] and len(first["heard"]) < len(first["text"]), (
        f"the barge-in came after the whole reply had played ({first['audio_ms']} ms); "
        f"seconds after its first audio: {timeline}"
    )
    assert first["text"].startswith(first["heard"].rsplit(" ", 1)[0])
    assert "return" in phone.feed.of(call_id, "transcript.final")[-1]["text"].lower()
    assert len(carrier.playback.clears) == 1
    assert any(m["event"] == "clear" for m in carrier.received)
    # The marks still pending at the clear came back unplayed, and the first reply's audio
    # stopped where the caller stopped hearing it.
    cleared_at = carrier.playback.clears[0]
    unplayed = [e for e in carrier.echoes if not e.played]
    assert unplayed and all(e.at >= cleared_at for e in unplayed)
    assert all(e.name.startswith(f"{first['turn']}:") for e in unplayed)
    played_first = max(
        int(e.name.split(":")[1])
        for e in carrier.echoes
        if e.played and e.name.startswith(f"{first['turn']}:")
    )
    sent_first = max(
        int(name.split(":")[1])
        for name in carrier.marks_received
        if name.startswith(f"{first['turn']}:")
    )
    assert played_first < sent_first  # audio had been sent ahead and was dropped by the clear
    assert 1500 < played_first < 20_000


async def test_the_agent_remembers_only_what_the_phone_caller_heard(models, say8k):
    agent = ScriptedAgent(
        reply="First part of a long answer. " + "More words follow here, and more again. " * 8
    )
    caller = {"caller_id": "+15550103"}
    # In real time: a long reply on a loaded machine leaves the simulated carrier's playback
    # behind the fast clock, and the marks it echoes at the stop come in a burst.
    async with (
        phone_server(models, agent, clock=WALL_CLOCK) as server,
        SimulatedCarrier(server.url, parameters=caller) as carrier,
    ):
        await carrier.say(say8k("Tell me everything about the bulb."))
        await carrier.wait_until(lambda: carrier.played_ms() > 2500, timeout=30)
        await carrier.press("#")  # stop the reply
        first = await server.feed.wait_for("+15550103", lambda e: e["type"] == "reply.end")
        await carrier.say(say8k(RETURNS))
        await server.feed.wait_for(
            "+15550103", lambda e: e["type"] == "reply.end" and e["turn"] > first["turn"]
        )
    assert first["interrupted"]
    assert first["heard"].startswith("First part of a long answer.")
    assert len(first["heard"]) < len(first["text"])
    question, memory = agent.asked[1]
    assert "return" in question.lower()
    assert len(memory) == 1 and memory[0].answer == first["heard"]
    assert isinstance(memory[0], Exchange)


async def test_a_handoff_is_spoken_then_the_stream_closes(phone, say8k, models):
    async with Carrier(phone.url, parameters={"caller_id": "+15550104"}) as carrier:
        await carrier.say(say8k(PERSON))
        await carrier.wait_until(lambda: carrier.closed_at is not None, timeout=60)
    call_id = phone.feed.call_id("+15550104")
    end = phone.feed.of(call_id, "reply.end")[0]
    assert end["handoff"] and "human_request" in end["rules"]
    assert phone.feed.of(call_id, "handoff")[0]["by"] == "assistant"
    assert carrier.close_code == 1000
    assert phone.feed.of(call_id, "call.ended")[0]["reason"] == "handoff"
    # The stream closed only after the caller heard the whole handoff message.
    assert carrier.echoes and all(e.played for e in carrier.echoes)
    assert carrier.echoes[-1].name == carrier.marks_received[-1]
    assert carrier.echoes[-1].at <= carrier.closed_at
    assert not carrier.playback.buffered
    assert "transferring" in transcribe(models, carrier.played_audio()).lower()


async def test_keypad_zero_asks_for_a_person(phone):
    async with Carrier(phone.url, parameters={"From": "+15550105"}) as carrier:
        await asyncio.sleep(0.5)
        await carrier.press("0")
        await carrier.wait_until(lambda: carrier.closed_at is not None, timeout=60)
    call_id = phone.feed.call_id("+15550105")
    assert phone.feed.of(call_id, "transcript.final")[0]["text"] == "[keypad 0]"
    end = phone.feed.of(call_id, "reply.end")[0]
    assert end["handoff"] and end["backend"] == "keypad"
    assert carrier.close_code == 1000 and carrier.played_ms() > 1000
    assert phone.feed.of(call_id, "call.ended")[0]["reason"] == "handoff"


async def test_with_takeover_a_handoff_waits_in_the_stream_for_a_person_who_is_heard(models, say):
    async with phone_server(models, ScriptedAgent(), twilio={"handoff": "takeover"}) as server:
        async with Carrier(server.url, parameters={"From": "+15550111"}) as carrier:
            await asyncio.sleep(0.5)
            await carrier.press("0")
            call_id = ""
            async with asyncio.timeout(60):
                while not call_id or not server.feed.of(call_id, "hold"):
                    await asyncio.sleep(0.05)
                    call_id = server.feed.call_id("+15550111") or ""
            assert server.feed.of(call_id, "hold")[0]["state"] == "waiting"
            await asyncio.sleep(1.0)  # the hold message plays; the stream stays open
            assert carrier.closed_at is None
            session = server.office.calls[call_id].session
            await session.take_over("alice")
            taken_ms = carrier.played_ms()
            voice = float_to_int16(say("Hello, this is Alice from customer service."))
            for offset in range(0, len(voice), 320):  # the console's 20 ms frames, in real time
                await session.person_audio("alice", voice[offset : offset + 320].tobytes())
                await asyncio.sleep(0.02)
            voice_ms = len(voice) // 16
            async with asyncio.timeout(15):  # played out, however late a loaded machine sent it
                while carrier.played_ms() < taken_ms + voice_ms - 100:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            assert carrier.closed_at is None
            person = carrier.played_audio()[taken_ms * 8 :]
        heard = transcribe(models, person).lower()
    assert "alice" in heard and "customer" in heard, heard
    assert [e["state"] for e in server.feed.of(call_id, "hold")] == ["waiting", "person"]
    assert server.feed.of(call_id, "call.ended")[0]["reason"] != "handoff"


async def test_a_carrier_that_never_echoes_marks_does_not_hold_the_call(phone, caplog):
    caplog.set_level(logging.WARNING, logger="voice.call.reply")
    parameters = {"caller_id": "+15550109"}
    async with Carrier(phone.url, parameters=parameters, echo_marks=False) as carrier:
        await asyncio.sleep(0.3)
        await carrier.press("0")
        await carrier.wait_until(lambda: carrier.playback.first_audio_at is not None, timeout=30)
        await carrier.wait_until(lambda: carrier.closed_at is not None, timeout=30)
    assert carrier.closed_at is not None and carrier.playback.first_audio_at is not None
    waited = (carrier.closed_at - carrier.playback.first_audio_at) * CLOCK.speed  # call time
    assert carrier.played_ms() / 1000 + 1.5 < waited < carrier.played_ms() / 1000 + 6.0
    assert "never reported the reply played" in caplog.text
    assert phone.feed.of(phone.feed.call_id("+15550109"), "call.ended")[0]["reason"] == "handoff"


async def test_keypad_star_repeats_the_last_answer_and_other_digits_do_nothing(models, say8k):
    agent = ScriptedAgent(reply="The warranty lasts two years.")
    caller = {"caller_id": "+15550106"}
    async with (
        phone_server(models, agent) as server,
        Carrier(server.url, parameters=caller) as carrier,
    ):
        await carrier.press("*")  # nothing said yet: nothing to repeat
        await carrier.press("5")  # no meaning: noted, nothing happens
        await carrier.say(say8k("How long is the warranty?"))
        first = await server.feed.wait_for("+15550106", lambda e: e["type"] == "reply.end")
        await carrier.press("*")
        again = await server.feed.wait_for(
            "+15550106", lambda e: e["type"] == "reply.end" and e["turn"] > first["turn"]
        )
    assert first["backend"] == "scripted"
    assert again["backend"] == "keypad" and again["text"] == first["text"]
    call_id = server.feed.call_id("+15550106")
    assert len(server.feed.of(call_id, "reply.end")) == 2
    assert len(agent.asked) == 1
    assert carrier.played_ms() > 2 * 1500


class TripsOnSecondQuestion:
    """The real recognizer, except that the second question's final transcript raises."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.finals = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def transcribe(self, audio: np.ndarray, **kwargs: Any) -> Any:
        if kwargs.get("urgent", True):
            self.finals += 1
            if self.finals == 2:
                raise RuntimeError("the recognizer tripped")
        return await self.real.transcribe(audio, **kwargs)


async def test_a_phone_caller_hears_when_a_question_was_not_understood(models, say8k):
    agent = ScriptedAgent(reply="The warranty lasts two years.")
    caller = {"caller_id": "+15550107"}
    recognizer = TripsOnSecondQuestion(models.transcriber)
    async with (
        phone_server(models, agent, transcriber=recognizer) as server,
        Carrier(server.url, parameters=caller) as carrier,
    ):
        await carrier.say(say8k("How long is the warranty?"))
        answer = await server.feed.wait_for("+15550107", lambda e: e["type"] == "reply.end")
        await carrier.wait_until(lambda: not carrier.playback.buffered, timeout=30)
        answered_ms = carrier.played_ms()
        await carrier.say(say8k("And how long does shipping take?"))
        sorry = await server.feed.wait_for(
            "+15550107", lambda e: e["type"] == "reply.end" and e["backend"] == "apology"
        )
        await carrier.wait_until(lambda: not carrier.playback.buffered, timeout=30)
        heard_sorry = transcribe(models, carrier.played_audio()[answered_ms * 8 :])
        await carrier.press("*")  # repeats the last answer, not the sorry
        again = await server.feed.wait_for(
            "+15550107", lambda e: e["type"] == "reply.end" and e["backend"] == "keypad"
        )
    assert answer["text"] == "The warranty lasts two years." and len(agent.asked) == 1
    assert not sorry["handoff"] and sorry["turn"] > answer["turn"]
    assert "say it again" in heard_sorry.lower(), heard_sorry
    errors = server.feed.of(server.feed.call_id("+15550107"), "error")
    assert [(e["code"], e["message"]) for e in errors] == [("asr_failed", sorry["text"])]
    assert again["text"] == answer["text"]
    assert carrier.close_code == 1000


async def test_the_signature_is_required_when_the_auth_token_is_set(models):
    agent = ScriptedAgent()
    async with phone_server(models, agent, twilio={"auth_token": "tok"}) as server:
        port = server.url.split(":")[2].split("/")[0]
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {twilio.SIGNATURE_HEADER: "bm9wZQ=="}):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(server.url, headers=headers)
                assert refused.value.status == 403
        wrong_url = twilio.signature("tok", "wss://elsewhere.example.com/twilio")
        with pytest.raises(aiohttp.WSServerHandshakeError):
            async with Carrier(server.url, headers={twilio.SIGNATURE_HEADER: wrong_url}):
                pass
        signed = twilio.signature("tok", f"wss://127.0.0.1:{port}/twilio")
        async with Carrier(
            server.url,
            parameters={"caller_id": "+15550107"},
            headers={twilio.SIGNATURE_HEADER: signed},
        ) as carrier:
            await server.feed.wait_for("+15550107", lambda e: e["type"] == "call.started")
        assert carrier.close_code == 1000


async def test_the_public_url_is_what_is_signed(models):
    public = "wss://voice.example.com/twilio"
    settings = {"auth_token": "tok", "public_url": public}
    async with phone_server(models, ScriptedAgent(), twilio=settings) as server:
        headers = {twilio.SIGNATURE_HEADER: twilio.signature("tok", public)}
        async with Carrier(server.url, headers=headers) as carrier:
            await asyncio.sleep(0.2)
        assert carrier.close_code == 1000


async def raw_stream(url: str, *messages: Any) -> int | None:
    """Send raw messages to /twilio; the close code once the server closes."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        for message in messages:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message if isinstance(message, str) else json.dumps(message))
        async with asyncio.timeout(10):
            async for _ in ws:
                pass
        return ws.close_code


CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "streamSid": "MZ1",
    "start": {
        "streamSid": "MZ1",
        "callSid": "CA1",
        "accountSid": "AC1",
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
}
MEDIA = {"event": "media", "streamSid": "MZ1", "media": {"payload": "//////////8="}}


async def test_bad_carriers_are_closed_cleanly_and_other_calls_go_on(phone, say8k, caplog):
    caplog.set_level(logging.WARNING, logger="voice.channels.phone")
    async with Carrier(phone.url, parameters={"caller_id": "+15550108"}) as good:
        speaking = asyncio.create_task(good.say(say8k(RETURNS)))
        bad = {
            "carrier_before_start": [CONNECTED, MEDIA],
            "carrier_unknown_event": [CONNECTED, START, MEDIA, {"event": "dance"}],
            "carrier_bad_base64": [
                CONNECTED,
                START,
                {**MEDIA, "media": {"payload": "***not base64***"}},
            ],
            "carrier_binary_frame": [CONNECTED, START, b"\x7f\xff"],
            "carrier_unsupported_format": [
                {**START, "start": {**START["start"], "mediaFormat": {"encoding": "audio/l16"}}}
            ],
        }
        codes = await asyncio.gather(*(raw_stream(phone.url, *m) for m in bad.values()))
        await speaking
        end = await phone.feed.wait_for("+15550108", lambda e: e["type"] == "reply.end")
    assert codes == [CloseCode.CARRIER] * len(bad)
    logged = caplog.text
    for code in bad:
        assert code in logged, code
    assert "return" in end["text"].lower() or end["sources"]
    assert good.close_code == 1000


async def test_no_start_in_time_closes_with_4408(models):
    async with phone_server(models, ScriptedAgent(), call={"start_timeout_s": 0.5}) as server:
        assert await raw_stream(server.url, CONNECTED) == 4408


async def test_transport_ignores_marks_echoed_because_of_a_clear():
    from voice.channels import protocol
    from voice.channels.phone import TwilioTransport

    class Line:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send_str(self, text: str) -> None:
            self.sent.append(text)

    line = Line()
    transport = TwilioTransport(line, "MZ1")  # type: ignore[arg-type]
    for position in (40, 80, 120):
        await transport.mark(1, position)
    transport.echoed("1:40")
    await transport.send_event(protocol.Clear(turn=1))
    transport.echoed("1:80")
    transport.echoed("1:120")
    transport.echoed("someone else's mark")
    assert transport.played_ms(1) == 40
    assert transport.played_ms(2) == 0
    assert [json.loads(m)["event"] for m in line.sent] == ["mark"] * 3 + ["clear"]


def test_settings_print_without_the_auth_token():
    from voice.config import Settings, TwilioSettings, settings_as_toml

    settings = dataclasses.replace(Settings(), twilio=TwilioSettings(auth_token="s3cret"))
    text = settings_as_toml(settings)
    assert "s3cret" not in text and "auth_token = (set; not shown)" in text
