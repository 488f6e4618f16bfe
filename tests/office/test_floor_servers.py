"""Two servers on one floor, on a real socket each, with the real models: records and logins in
the PostgreSQL at 127.0.0.1:5432, the live floor and the chat sessions in the Redis at
127.0.0.1:6379, recordings in one shared directory. A supervisor on one server watches, steps
into, listens to, takes and ends a call on the other; a chat session goes back and forth. The
same through HAProxy with `voicedesk serve` processes: tests/ops/test_deploy.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.support.fakes import ScriptedAgent
from tests.support.postgres import empty_postgres_url, postgres_url  # noqa: F401 (fixtures)
from tests.support.redis import live_prefix, redis_url  # noqa: F401 (fixtures)
from tests.support.servers import Models, make_services
from tests.support.supervisor import PASSWORD, OfficeServer, supervisor
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient
from voice.config import LiveSettings, RecordsSettings, ServerSettings, Settings
from voice.office.backoffice import open_office
from voice.office.tap import ASSISTANT
from voice.ops.server import start_server

pytestmark = pytest.mark.models
PCM16 = AudioFormat("pcm16", 16000)
REPLY = "The warranty lasts two years."


@contextlib.asynccontextmanager
async def two_servers(
    models: Models, agent: ScriptedAgent, records_url: str, redis: str, prefix: str, data: Path
) -> AsyncIterator[tuple[OfficeServer, OfficeServer]]:
    live = {"url": redis, "prefix": prefix}
    started: list[tuple[Any, OfficeServer]] = []
    try:
        for name in ("one", "two"):
            settings = dataclasses.replace(
                Settings(),
                server=ServerSettings(data_dir=data / name),
                records=RecordsSettings(url=records_url, recordings_dir=data / "shared"),
                live=LiveSettings(**live),
            )
            office = open_office(settings)
            services = make_services(models, agent, live=live)
            runner, port = await start_server(services, "127.0.0.1", 0, office)
            started.append((runner, OfficeServer(f"http://127.0.0.1:{port}", office)))
        office.users.add("alice", PASSWORD)
        office.users.add("bob", PASSWORD)
        for _, running in started:
            await _until_floor_has(running.base, 2)
        yield started[0][1], started[1][1]
    finally:
        for runner, running in started:
            await runner.cleanup()
            running.office.close()


async def _until_floor_has(base: str, servers: int) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        while True:
            async with http.get(base + "/readyz") as response:
                live = (await response.json())["live"]
            if live["up"] and live["servers"] == servers:
                return
            await asyncio.sleep(0.05)


async def feed_until(ws: aiohttp.ClientWebSocketResponse, match: Any) -> dict[str, Any]:
    async with asyncio.timeout(30):
        async for message in ws:
            event = json.loads(message.data)
            if match(event):
                return event
    raise AssertionError("the feed ended")


async def test_a_supervisor_on_one_server_works_a_call_on_the_other(
    models,
    empty_postgres_url,  # noqa: F811
    redis_url,  # noqa: F811
    live_prefix,  # noqa: F811
    tmp_path,
    say,
):
    agent = ScriptedAgent(reply=REPLY)
    async with (
        two_servers(models, agent, empty_postgres_url, redis_url, live_prefix, tmp_path) as (
            one,
            two,
        ),
        supervisor(two.base, "alice", PASSWORD) as alice,
        supervisor(one.base, "bob", PASSWORD) as bob,
        alice.http.ws_connect(
            two.base.replace("http", "ws") + "/api/live", headers=alice.headers
        ) as feed,
        CallClient(one.call_url, PCM16, keep_audio=True) as call,
    ):
        call_id = call.call_id
        await feed_until(feed, lambda e: e["type"] == "call.started" and e["call_id"] == call_id)
        await call.speak(np.zeros(16_000, np.float32))  # a second of the line, recorded
        await call.send_text("How long is the warranty?")
        shown = await feed_until(feed, lambda e: e["type"] == "reply.end")
        assert shown["call_id"] == call_id and shown["text"] == REPLY
        status, listed = await alice.get("/api/calls")
        assert [c["live"] for c in listed["calls"] if c["call_id"] == call_id] == [True]

        async with (
            aiohttp.ClientSession() as stranger,
            stranger.post(f"{two.base}/api/calls/{call_id}/end") as response,
        ):
            assert response.status == 401, "nothing is passed on for a stranger"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await alice.http.ws_connect(
                two.base.replace("http", "ws") + f"/api/calls/{call_id}/audio",
                headers={**alice.headers, "Origin": "http://elsewhere.example"},
            )
        assert refused.value.status == 403
        status, _ = await alice.post(f"/api/calls/{call_id}/handoff")
        assert status == 200, "passed to the server that holds the call"
        await call.wait_for(lambda e: e["type"] == "hold" and e["state"] == "waiting", timeout=60)
        status, queue = await alice.get("/api/queue")
        assert [w["call_id"] for w in queue["waiting"]] == [call_id], "every server's queue"

        async with alice.audio(call_id) as ears:
            async with asyncio.timeout(30):
                while not len(ears.heard(ASSISTANT)):  # noqa: ASYNC110 (the hold audio)
                    await asyncio.sleep(0.05)
            status, taken = await alice.post(f"/api/calls/{call_id}/take")
            assert (status, taken["holder"]) == (200, "alice")
            status, refused = await bob.post(f"/api/calls/{call_id}/take")
            assert status == 409 and refused["error"]["holder"] == "alice"
            await ears.speak(np.concatenate([say("Hello, this is Alice."), np.zeros(16_000)]))
            said = await call.wait_for(lambda e: e["type"] == "person.said", timeout=60)
            assert said["name"] == "alice" and "alice" in said["text"].lower()
        status, _ = await alice.post(f"/api/calls/{call_id}/end")
        assert status == 200
        ended = await call.wait_for(lambda e: e["type"] == "end", timeout=30)
        assert ended["reason"] == "ended_by_supervisor"
        await feed_until(feed, lambda e: e["type"] == "call.ended" and e["call_id"] == call_id)

        assert one.office.store.flush(10)
        status, record = await alice.get(f"/api/calls/{call_id}")
        assert status == 200 and not record["live"]
        assert record["end_reason"] == "ended_by_supervisor"
        assert [t["reply"] for t in record["turns"] if t["backend"] == "scripted"] == [REPLY]
        actions = [(a["action"], a["by"]) for a in record["actions"]]
        assert ("taken", "alice") in actions and ("ended", "alice") in actions
        async with alice.http.get(
            f"{two.base}/api/calls/{call_id}/recording", headers=alice.headers
        ) as response:
            assert response.status == 200, "recorded on one, played from two"
            assert len(await response.read()) > 16_000


async def test_a_chat_session_goes_on_whichever_server_takes_the_message(
    models,
    empty_postgres_url,  # noqa: F811
    redis_url,  # noqa: F811
    live_prefix,  # noqa: F811
    tmp_path,
):
    agent = ScriptedAgent(reply=REPLY)
    async with two_servers(
        models, agent, empty_postgres_url, redis_url, live_prefix, tmp_path
    ) as servers:
        replies = []
        async with aiohttp.ClientSession() as http:
            for n, question in enumerate(["first", "second", "third", "fourth"]):
                url = servers[n % 2].base + "/api/chat"
                body = {"message": question, "session_id": "alternating"}
                async with http.post(url, json=body) as response:
                    assert response.status == 200
                    replies.append(await response.json())
        assert len({r["call_id"] for r in replies}) == 1, "one session, one call"
        async with aiohttp.ClientSession() as http:
            for n, reply in enumerate(replies):  # each token is taken by the other server
                body = {
                    "call_id": reply["call_id"],
                    "turn": n + 1,
                    "helpful": True,
                    "token": reply["feedback_token"],
                }
                async with http.post(servers[(n + 1) % 2].base + "/api/feedback", json=body) as r:
                    assert r.status == 200, await r.text()
        memories = [[e.question for e in memory] for _, memory in agent.asked]
        assert memories == [[], ["first"], ["first", "second"], ["first", "second", "third"]]
        servers[0].office.store.flush(10)
        detail = servers[1].office.store.call(replies[0]["call_id"])
        assert [t.question for t in detail.turns] == ["first", "second", "third", "fourth"]
        assert detail.call.channel == "text" and detail.call.ended_at is None


async def test_without_redis_a_server_takes_calls_and_says_what_is_missing(models, tmp_path):
    agent = ScriptedAgent(reply=REPLY)
    live = {"url": "redis://127.0.0.1:1/0", "prefix": "nowhere"}
    settings = dataclasses.replace(
        Settings(), server=ServerSettings(data_dir=tmp_path), live=LiveSettings(**live)
    )
    office = open_office(settings)
    runner, port = await start_server(
        make_services(models, agent, live=live), "127.0.0.1", 0, office
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/api/chat", json={"message": "hello"}) as response:
                assert response.status == 503
                assert (await response.json())["error"]["code"] == "sessions_unavailable"
            async with http.get(base + "/readyz") as response:
                ready = await response.json()
            assert response.status == 200 and ready["ready"], "Redis never makes it unready"
            assert ready["live"]["up"] is False
        async with CallClient(base.replace("http", "ws") + "/call", PCM16) as call:
            await call.send_text("How long is the warranty?")
            end = await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)
        assert end["text"] == REPLY
    finally:
        await runner.cleanup()
        office.close()
