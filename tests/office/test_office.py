"""The back office on a real socket: records of real calls, the records APIs behind a login, the
live feed, and a supervisor stepping into a live call."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import wave
from pathlib import Path

import aiohttp
import pytest

from agent.selection import build_agent
from agent.types import AgentSettings
from tests.support.servers import make_services
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient
from voice.config import ServerSettings, Settings
from voice.office.backoffice import open_office
from voice.ops.server import start_server

PCM16 = AudioFormat("pcm16", 16000)
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
async def office_server(models, tmp_path_factory):
    data_dir: Path = tmp_path_factory.mktemp("data")
    settings = dataclasses.replace(Settings(), server=ServerSettings(data_dir=data_dir))
    office = open_office(settings)
    office.users.add("alice", PASSWORD)
    agent, _ = build_agent(AgentSettings(backend="extractive"))
    runner, port = await start_server(make_services(models, agent), "127.0.0.1", 0, office)
    base = f"http://127.0.0.1:{port}"
    _, login = await post(f"{base}/api/login", json={"name": "alice", "password": PASSWORD})
    token = login["token"]
    yield base, {"Authorization": f"Bearer {token}"}, office
    await runner.cleanup()
    office.close()


async def get(url, headers=None, **kwargs):
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers, **kwargs) as r:
        body = await r.read()
        return r.status, r.headers, body


async def post(url, headers=None, **kwargs):
    async with aiohttp.ClientSession() as http, http.post(url, headers=headers, **kwargs) as r:
        return r.status, await r.json()


async def test_a_call_is_recorded_and_readable_by_a_supervisor(office_server, say):
    base, auth, office = office_server
    url = base.replace("http", "ws") + "/call"
    async with CallClient(url, PCM16, realtime_playback=False) as call:
        turn = await call.ask(
            say("My smart bulb keeps flashing red. What should I do?"), realtime=False
        )
    assert office.store.flush(10)
    status, _, body = await get(f"{base}/api/calls/{call.call_id}", auth)
    assert status == 200
    record = json.loads(body)
    assert record["channel"] == "call" and record["ended_at"] is not None
    [stored] = record["turns"]
    assert stored["question"] == turn.transcript
    assert stored["reply"] == turn.heard
    assert stored["sources"] == turn.sources and stored["handoff"] is False
    assert stored["timings_ms"]["first_audio"] == turn.timings_ms["first_audio"]
    status, headers, wav = await get(f"{base}/api/calls/{call.call_id}/recording", auth)
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(wav)) as recording:
        assert recording.getnchannels() == 2 and recording.getframerate() == 16000
        assert recording.getnframes() > 16000 * 3
    status, headers, csv_text = await get(
        f"{base}/api/calls", auth, params={"format": "csv", "q": "bulb"}
    )
    assert status == 200 and call.call_id in csv_text.decode()


async def test_records_need_a_supervisor(office_server):
    base, _, _ = office_server
    for path in ("/api/calls", "/api/calls/x", "/api/calls/x/recording", "/api/report/gaps"):
        status, _, _ = await get(base + path)
        assert status == 401, path
        status, _, _ = await get(base + path, {"Authorization": "Bearer forged"})
        assert status == 401, path
    status, headers, _ = await get(base + "/console", allow_redirects=False)
    assert status == 302 and headers["Location"] == "/login"
    status, _ = await post(base + "/api/login", json={"name": "alice", "password": "guess"})
    assert status == 401
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(base.replace("http", "ws") + "/api/live")


async def test_card_numbers_are_redacted_in_records_and_the_live_feed(office_server):
    base, auth, office = office_server
    async with aiohttp.ClientSession() as http:
        feed = await http.ws_connect(base.replace("http", "ws") + "/api/live", headers=auth)
        url = base.replace("http", "ws") + "/call"
        async with CallClient(url, PCM16, realtime_playback=False) as call:
            await call.send_text("my card number is 4111 1111 1111 1111 can you refund me")
            await call.wait_for(lambda e: e["type"] == "reply.end")
        seen = []
        while not any(e["type"] == "call.ended" and e["call_id"] == call.call_id for e in seen):
            seen.append(json.loads((await feed.receive(timeout=10)).data))
        await feed.close()
    mine = [e for e in seen if e.get("call_id") == call.call_id]
    kinds = [e["type"] for e in mine]
    assert kinds[0] == "call.started" and "reply.end" in kinds and kinds[-1] == "call.ended"
    assert "4111" not in json.dumps(mine)
    assert office.store.flush(10)
    _, _, body = await get(f"{base}/api/calls/{call.call_id}", auth)
    question = json.loads(body)["turns"][0]["question"]
    assert "4111" not in question and "[card]" in question


async def test_a_supervisor_speaks_into_a_live_call_and_hands_it_off(office_server):
    base, auth, _ = office_server
    url = base.replace("http", "ws") + "/call"
    async with CallClient(url, PCM16, realtime_playback=False) as call:
        status, _ = await post(
            f"{base}/api/calls/{call.call_id}/say", auth, json={"text": "Hello, this is Sam."}
        )
        assert status == 200
        said = await call.wait_for(lambda e: e["type"] == "reply.end")
        status, _ = await post(f"{base}/api/calls/{call.call_id}/handoff", auth)
        assert status == 200
        handoff = await call.wait_for(lambda e: e["type"] == "handoff")
    assert said["text"] == "Hello, this is Sam." and said["backend"] == "supervisor"
    assert call.turns[said["turn"]].audio
    assert handoff["by"] == "supervisor"
    status, body = await post(f"{base}/api/calls/{call.call_id}/say", auth, json={"text": "x"})
    assert status == 404 and body["error"]["code"] == "not_live"


async def test_unhelpful_answers_show_up_in_the_gaps_report(office_server):
    base, auth, office = office_server
    url = base.replace("http", "ws") + "/call"
    for _ in range(2):
        async with CallClient(url, PCM16, realtime_playback=False) as call:
            await call.send_text("what will the weather be tomorrow")
            end = await call.wait_for(lambda e: e["type"] == "reply.end")
    status, _ = await post(
        f"{base}/api/feedback",
        json={
            "call_id": call.call_id,
            "turn": end["turn"],
            "helpful": False,
            "token": call.feedback_token,
        },
    )
    assert status == 200
    assert office.store.flush(10)
    _, _, body = await get(f"{base}/api/report/gaps", auth, params={"days": "7"})
    report = json.loads(body)
    weather = [q for q in report["questions"] if "weather" in q["question"]]
    assert weather and weather[0]["count"] == 2 and weather[0]["handed_off"] == 2
    assert weather[0]["unhelpful"] == 1
    assert sum(day["handed_off"] for day in report["daily"]) >= 2
    status, body = await post(f"{base}/api/feedback", json={"turn": "x"})
    assert status == 400


async def test_a_stalled_console_is_dropped_without_slowing_calls(office_server):
    base, auth, office = office_server
    async with aiohttp.ClientSession() as http:
        feed = await http.ws_connect(  # kept: a console that is connected but reads nothing
            base.replace("http", "ws") + "/api/live", headers=auth
        )
        await asyncio.sleep(0.2)
        subscription = next(iter(office.hub._subscribers))
        for index in range(2000):  # a console that reads nothing falls behind
            office.hub.publish({"type": "reply.text", "call_id": "load", "text": str(index)})
        assert subscription.dropped
        assert subscription not in office.hub._subscribers
        await feed.close()


async def test_a_console_that_goes_away_is_unsubscribed_at_once(office_server):
    """Its feed ends when it closes, not at the next call event (nor at server shutdown)."""
    base, auth, office = office_server
    async with aiohttp.ClientSession() as http:
        feed = await http.ws_connect(base.replace("http", "ws") + "/api/live", headers=auth)
        await asyncio.sleep(0.2)
        assert len(office.hub._subscribers) == 1
        await feed.close()
    for _ in range(200):
        if not office.hub._subscribers:
            break
        await asyncio.sleep(0.01)
    assert not office.hub._subscribers


async def test_text_api_sessions_are_recorded_on_the_text_channel(office_server):
    base, auth, office = office_server
    for message in ("how long is the warranty", "my email is jo@example.com, where is my parcel"):
        status, reply = await post(
            f"{base}/api/chat", json={"message": message, "session_id": "k7"}
        )
        assert status == 200
    assert office.store.flush(10)
    _, _, body = await get(f"{base}/api/calls/{reply['call_id']}", auth)
    record = json.loads(body)
    assert record["channel"] == "text"
    assert [t["turn"] for t in record["turns"]] == [1, 2]
    assert "warranty" in record["turns"][0]["reply"].lower()
    assert "jo@example.com" not in record["turns"][1]["question"]


async def test_feedback_is_taken_only_from_someone_who_took_part_in_the_call(office_server):
    """The attack: anyone posting feedback for any call id. A caller's own token opens its own
    call's turns and no other's; a supervisor opens any; nobody else any."""
    base, auth, office = office_server
    url = base.replace("http", "ws") + "/call"
    async with CallClient(url, PCM16, realtime_playback=False) as mine:
        pass
    async with CallClient(url, PCM16, realtime_playback=False) as theirs:
        pass
    verdict = {"turn": 1, "helpful": False}
    stranger = await post(f"{base}/api/feedback", json={**verdict, "call_id": mine.call_id})
    forged = await post(
        f"{base}/api/feedback",
        json={**verdict, "call_id": theirs.call_id, "token": mine.feedback_token},
    )
    own = await post(
        f"{base}/api/feedback",
        json={**verdict, "call_id": mine.call_id, "token": mine.feedback_token},
    )
    supervisor = await post(
        f"{base}/api/feedback", auth, json={**verdict, "call_id": theirs.call_id, "turn": 2}
    )
    assert stranger[0] == 403 and stranger[1]["error"]["code"] == "not_your_call"
    assert forged[0] == 403
    assert own[0] == 200 and supervisor[0] == 200


async def test_a_chat_session_gets_a_feedback_token_and_comments_are_redacted(office_server):
    base, _, office = office_server
    _, reply = await post(f"{base}/api/chat", json={"message": "how long is the warranty"})
    comment = "wrong! call me on 4,111,111,111,111 or mail jane at example dot com"
    status, _ = await post(
        f"{base}/api/feedback",
        json={
            "call_id": reply["call_id"],
            "turn": 1,
            "helpful": False,
            "comment": comment,
            "token": reply["feedback_token"],
        },
    )
    assert status == 200
    assert office.store.flush(10)
    [kept] = office.store.call(reply["call_id"]).feedback
    assert "wrong!" in kept.comment
    assert "111" not in kept.comment and "example" not in kept.comment


async def test_a_feedback_flood_from_one_address_is_held_to_its_rate(office_server):
    base, auth, office = office_server
    async with aiohttp.ClientSession() as http:
        statuses = []
        for turn in range(40):
            verdict = {"call_id": "flood", "turn": turn, "helpful": True}
            async with http.post(f"{base}/api/feedback", json=verdict, headers=auth) as r:
                statuses.append(r.status)
                retry_after = r.headers.get("Retry-After")
    assert statuses.count(200) <= 12 and statuses[-1] == 429
    assert retry_after is not None and int(retry_after) >= 1
    office.feedback_rates = type(office.feedback_rates)()  # the other tests' address is fresh


async def test_history_filters_out_of_bounds_are_refused_not_failed(office_server):
    base, auth, _ = office_server
    for params, why in [
        ({"offset": str(10**30)}, "offset"),
        ({"limit": "-5"}, "limit"),
        ({"since": "nan"}, "since"),
        ({"q": " ".join(f"word{n}" for n in range(1000))}, "words"),
    ]:
        status, _, body = await get(f"{base}/api/calls", auth, params=params)
        assert status == 400, (params, status)
        error = json.loads(body)["error"]
        assert error["code"] == "bad_filter" and why in error["message"]
    status, _, _ = await get(f"{base}/api/calls", auth, params={"q": "bulb red", "offset": "5"})
    assert status == 200


async def test_a_recording_that_is_gone_is_reported_missing_not_served_empty(office_server):
    base, auth, office = office_server
    url = base.replace("http", "ws") + "/call"
    async with CallClient(url, PCM16, realtime_playback=False) as call:
        await call.send_text("is my bulb ok")
        await call.wait_for(lambda e: e["type"] == "reply.end")
    assert office.store.flush(10)
    (office.recordings_dir / f"{call.call_id}.wav").write_bytes(b"")
    status, _, body = await get(f"{base}/api/calls/{call.call_id}/recording", auth)
    assert status == 404 and json.loads(body)["error"]["code"] == "recording_missing"
