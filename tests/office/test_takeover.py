"""A person takes a call, through the real server on a real socket, with the real models: the
handoff queue, listening in, taking over (the supervisor's voice reaches the caller and the
caller's the supervisor, each checked by transcribing what arrived), handing back, ending; and
who may do it. The same in a browser: tests/office/test_takeover_browser.py."""

from __future__ import annotations

import asyncio
import io
import time
import wave

import aiohttp
import numpy as np
import pytest

from tests.support.fakes import ScriptedAgent
from tests.support.supervisor import PASSWORD, OfficeServer, Supervisor, office_server, supervisor
from voice.channels.codecs import AudioFormat, int16_to_float
from voice.clients.client import CallClient
from voice.office.tap import ASSISTANT, CALLER

PCM16 = AudioFormat("pcm16", 16000)
ALICE, BOB = "alice", "bob"
PERSON_SAYS = "Hello, this is Alice from customer service. How can I help you today?"
CALLER_SAYS = "I would like to change the address on my account."


@pytest.fixture(scope="module")
async def server(models, tmp_path_factory):
    agent = ScriptedAgent(reply="The warranty lasts two years.")
    async with office_server(models, agent, tmp_path_factory.mktemp("takeover-data")) as running:
        yield running


def words(text: str) -> set[str]:
    return {w.strip(".,?!").lower() for w in text.split()}


async def waiting_call(server: OfficeServer, call: CallClient, person: Supervisor) -> dict:
    """Ask for a person on the keypad; the call's entry in the queue."""
    await call.send_key("0")
    await call.wait_for(lambda e: e["type"] == "hold" and e["state"] == "waiting", timeout=60)
    status, queue = await person.get("/api/queue")
    assert status == 200
    return next(entry for entry in queue["waiting"] if entry["call_id"] == call.call_id)


async def test_a_person_takes_the_call_is_heard_hears_the_caller_and_hands_it_back(
    server, models, say
):
    async with (
        supervisor(server.base, ALICE, PASSWORD) as alice,
        supervisor(server.base, BOB, PASSWORD) as bob,
        CallClient(server.call_url, PCM16, keep_audio=True) as call,
    ):
        await call.speak(np.zeros(1600, np.float32))  # the line is open from now on, as a phone's
        await call.send_text("How long is the warranty?")
        await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
        entry = await waiting_call(server, call, alice)
        assert entry["reason"] == "human_request" and entry["channel"] == "call"
        assert entry["last"][0]["question"] == "How long is the warranty?"
        assert entry["waited_s"] >= 0

        async with alice.audio(call.call_id) as ears:
            # Listening in, before taking it: the hold audio comes through.
            async with asyncio.timeout(30):
                while not len(ears.heard(ASSISTANT)):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            status, taken = await alice.post(f"/api/calls/{call.call_id}/take")
            assert (status, taken["holder"]) == (200, ALICE)
            held = await call.wait_for(lambda e: e["type"] == "hold" and e["state"] == "person")
            assert held["name"] == ALICE
            status, refused = await bob.post(f"/api/calls/{call.call_id}/take")
            assert status == 409 and refused["error"]["holder"] == ALICE

            taken_at = time.monotonic()
            await ears.speak(np.concatenate([say(PERSON_SAYS), np.zeros(16_000, np.float32)]))
            said = await call.wait_for(lambda e: e["type"] == "person.said", timeout=60)
            assert said["name"] == ALICE and {"alice", "help"} <= words(said["text"])
            assert call.received is not None
            to_caller = b"".join(frame for at, frame in call.received if at >= taken_at)
            heard = models.transcriber.transcribe_blocking(int16_to_float(PCM16.decode(to_caller)))
            assert {"alice", "customer", "help"} <= words(heard.text), heard.text

            spoke_at = time.monotonic()
            await call.speak(say(CALLER_SAYS))
            await call.wait_for(
                lambda e: e["type"] == "transcript.final" and "address" in e["text"], timeout=60
            )
            to_person = ears.heard(CALLER, since=spoke_at)
            heard = models.transcriber.transcribe_blocking(to_person)
            assert {"change", "address", "account"} <= words(heard.text), heard.text
            assert not len(ears.heard(ASSISTANT, since=taken_at + 1.0)), "not their own voice"

        status, _ = await bob.post(f"/api/calls/{call.call_id}/handback")
        assert status == 409
        status, _ = await alice.post(f"/api/calls/{call.call_id}/handback")
        assert status == 200
        await call.wait_for(lambda e: e["type"] == "hold" and e["state"] == "assistant")
        seen = len(call.events)
        await call.send_text("And how long is the warranty again?")
        answer = await call.wait_for(
            lambda e: e["type"] == "reply.end" and e["backend"] == "scripted",
            since=seen,
            timeout=60,
        )
        assert answer["text"] == "The warranty lasts two years."
        call_id = call.call_id

    async with supervisor(server.base, ALICE, PASSWORD) as alice:
        async with asyncio.timeout(10):
            while True:
                status, record = await alice.get(f"/api/calls/{call_id}")
                if record.get("ended_at"):
                    break
                await asyncio.sleep(0.1)
        async with alice.http.get(
            f"{server.base}/api/calls/{call_id}/recording", headers=alice.headers
        ) as response:
            recording = await response.read()
    actions = [(a["action"], a["by"]) for a in record["actions"]]
    assert actions == [("waiting", ""), ("taken", ALICE), ("handed_back", ALICE)]
    # The person's voice is on the assistant's side (right) of the stereo recording.
    with wave.open(io.BytesIO(recording)) as wav:
        assert wav.getnchannels() == 2
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assistant = models.transcriber.transcribe_blocking(int16_to_float(stereo[:, 1].copy()))
    assert {"alice", "customer"} <= words(assistant.text), assistant.text
    person_turns = [t for t in record["turns"] if t["backend"] == "person"]
    assert any("alice" in t["reply"].lower() for t in person_turns)
    assert any("address" in t["question"].lower() for t in person_turns)


async def test_a_supervisor_ends_a_call_and_the_record_says_who(server):
    async with (
        supervisor(server.base, BOB, PASSWORD) as bob,
        CallClient(server.call_url, PCM16) as call,
    ):
        await waiting_call(server, call, bob)
        status, _ = await bob.post(f"/api/calls/{call.call_id}/end")
        assert status == 200
        end = await call.wait_for(lambda e: e["type"] == "end", timeout=30)
        assert end["reason"] == "ended_by_supervisor"
        status, record = await bob.get(f"/api/calls/{call.call_id}")
    assert ("ended", BOB) in [(a["action"], a["by"]) for a in record["actions"]]
    assert record["end_reason"] == "ended_by_supervisor"


async def test_speaking_without_holding_the_call_is_refused(server, say):
    async with (
        supervisor(server.base, BOB, PASSWORD) as bob,
        CallClient(server.call_url, PCM16, keep_audio=True) as call,
    ):
        await call.send_text("How long is the warranty?")
        await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
        async with bob.audio(call.call_id) as ears:
            await ears.speak(say("Can you hear me?"), realtime=False)
            async with asyncio.timeout(10):
                while not ears.messages:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert [m["code"] for m in ears.messages] == ["not_holding"]
        status, _ = await bob.post(f"/api/calls/{call.call_id}/handback")
        assert status == 409


async def test_the_page_learns_who_is_logged_in_and_gets_its_scripts(server):
    async with supervisor(server.base, BOB, PASSWORD) as bob:
        assert await bob.get("/api/me") == (200, {"name": BOB})
        for script, holds in (("console-audio.js", "registerProcessor"), ("console.js", "/api/me")):
            async with bob.http.get(f"{server.base}/{script}") as response:
                assert response.status == 200
                assert "javascript" in response.content_type
                assert holds in await response.text()
    async with aiohttp.ClientSession() as http, http.get(server.base + "/api/me") as response:
        assert response.status == 401


async def test_nobody_logged_in_cannot_list_take_listen_or_speak(server):
    async with (
        aiohttp.ClientSession() as http,
        CallClient(server.call_url, PCM16) as call,
    ):
        path = f"/api/calls/{call.call_id}"
        async with http.get(server.base + "/api/queue") as response:
            assert response.status == 401
        for action in ("take", "handback", "end"):
            async with http.post(f"{server.base}{path}/{action}") as response:
                assert response.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.base.replace("http", "ws") + f"{path}/audio")
        assert refused.value.status == 401
        bad = {"Authorization": "Bearer not-a-session"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.base.replace("http", "ws") + f"{path}/audio", headers=bad)
        assert refused.value.status == 401


async def test_a_page_from_another_origin_cannot_listen_even_logged_in(server):
    async with (
        supervisor(server.base, ALICE, PASSWORD) as alice,
        CallClient(server.call_url, PCM16) as call,
    ):
        url = server.base.replace("http", "ws") + f"/api/calls/{call.call_id}/audio"
        for origin in ("https://evil.example", "http://127.0.0.1:1"):
            headers = {**alice.headers, "Origin": origin}
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await alice.http.ws_connect(url, headers=headers)
            assert refused.value.status == 403
        own = {**alice.headers, "Origin": server.base}
        async with alice.http.ws_connect(url, headers=own) as ws:
            assert (await ws.receive_json(timeout=10))["type"] == "audio"
