"""The deployment of docs/deploy.md, for real: two `voicedesk serve` processes on one PostgreSQL
(127.0.0.1:5432) and one Redis (127.0.0.1:6379), behind Debian's HAProxy that the test starts.
Callers land on both servers; a supervisor logged in through the balancer sees both calls live
and steps into each, one of them on the other server; every turn of both calls is in
PostgreSQL; a chat session whose messages alternate between the servers stays one session."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import psycopg
import pytest

from tests.support.deployment import PASSWORD, add_supervisor, balancer, environment, serving
from tests.support.postgres import empty_postgres_url, postgres_url  # noqa: F401 (fixtures)
from tests.support.redis import live_prefix, redis_url  # noqa: F401 (fixtures)
from tests.support.servers import free_port
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient

pytestmark = pytest.mark.models


async def calls_on(port: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
        calls: int = (await r.json())["calls"]
        return calls


async def test_two_servers_behind_haproxy_are_one_hotline(
    empty_postgres_url,  # noqa: F811
    redis_url,  # noqa: F811
    live_prefix,  # noqa: F811
    tmp_path,
):
    env = environment(empty_postgres_url, redis_url, live_prefix, tmp_path)
    await add_supervisor(env)
    one, two = free_port(), free_port()
    pcm16 = AudioFormat("pcm16", 16000)
    async with (
        serving(env, tmp_path, one),
        serving(env, tmp_path, two),
        balancer(tmp_path, one, two) as base,
    ):
        ws_base = base.replace("http", "ws", 1)
        async with (
            CallClient(ws_base + "/call", pcm16, realtime_playback=False) as first,
            CallClient(ws_base + "/call", pcm16, realtime_playback=False) as second,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        ):
            assert (await calls_on(one), await calls_on(two)) == (1, 1), "one call on each"
            async with http.post(
                base + "/api/login", json={"name": "alice", "password": PASSWORD}
            ) as response:
                assert response.status == 200
                headers = {"Authorization": f"Bearer {(await response.json())['token']}"}
            for call in (first, second):
                await call.send_text("how long is the warranty")
                await call.wait_for(lambda e: e["type"] == "reply.end", timeout=60)

            async with http.ws_connect(ws_base + "/api/live", headers=headers) as feed:
                started: set[str] = set()
                async with asyncio.timeout(20):
                    while started != {first.call_id, second.call_id}:
                        event = json.loads((await feed.receive()).data)
                        if event["type"] == "call.started":
                            started.add(event["call_id"])

            # Each step lands on the next server in turn: of the two steps into each call, one
            # reaches the server that holds it and one is passed on to it.
            for action, state in (("handoff", "waiting"), ("take", "person")):
                for call in (first, second):
                    path = f"{base}/api/calls/{call.call_id}/{action}"
                    async with http.post(path, headers=headers) as response:
                        assert response.status == 200, await response.text()
                    await call.wait_for(
                        lambda e, s=state: e["type"] == "hold" and e["state"] == s, timeout=60
                    )
            for call in (first, second):
                path = f"{base}/api/calls/{call.call_id}/end"
                async with http.post(path, headers=headers) as response:
                    assert response.status == 200
                ended = await call.wait_for(lambda e: e["type"] == "end", timeout=30)
                assert ended["reason"] == "ended_by_supervisor"

            session = []
            for question in ("how long is the warranty", "and how do I reset it", "thanks"):
                body = {"message": question, "session_id": "behind-the-balancer"}
                async with http.post(base + "/api/chat", json=body) as response:
                    assert response.status == 200
                    session.append((await response.json())["call_id"])
            assert len(set(session)) == 1, "one session whichever server answered"

    with psycopg.connect(empty_postgres_url) as db:
        calls = dict(
            db.execute(
                "SELECT call_id, end_reason FROM calls WHERE call_id = ANY(%s)",
                ([first.call_id, second.call_id],),
            ).fetchall()
        )
        turns = db.execute(
            "SELECT call_id, count(*) FROM turns WHERE call_id = ANY(%s) GROUP BY call_id",
            ([first.call_id, second.call_id, session[0]],),
        ).fetchall()
        actions = db.execute(
            "SELECT action, count(*) FROM actions GROUP BY action ORDER BY action"
        ).fetchall()
    assert calls == {first.call_id: "ended_by_supervisor", second.call_id: "ended_by_supervisor"}
    assert dict(turns) == {first.call_id: 1, second.call_id: 1, session[0]: 3}
    assert dict(actions) == {"ended": 2, "taken": 2, "waiting": 2}
