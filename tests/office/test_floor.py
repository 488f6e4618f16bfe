"""The shared live floor (`voice.office.floor`) on the real Redis at 127.0.0.1:6379: servers
made of a `LiveHub` and a `Floor` each, without models or sockets of their own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis

from tests.support.redis import live_prefix, redis_url  # noqa: F401 (fixtures)
from voice.config import ServerSettings, Settings
from voice.office.backoffice import open_office
from voice.office.floor import Floor
from voice.office.live import LiveHub, Subscription
from voice.office.records import LOST, CallRecord


@dataclass
class Server:
    hub: LiveHub
    floor: Floor
    lost: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def servers(url: str, prefix: str, count: int, **timing: Any) -> AsyncIterator[list[Server]]:
    """`count` servers on one floor; each ends a lost call as `Office.lost` does."""
    made = []
    for n in range(count):
        made.append(await join(url, prefix, f"http://server-{n}", **timing))
    try:
        yield made
    finally:
        for server in made:
            await server.floor.stop()


async def join(url: str, prefix: str, address: str, **timing: Any) -> Server:
    hub = LiveHub()
    lost: list[str] = []

    def end_lost(call_id: str) -> None:
        lost.append(call_id)
        hub.publish({"type": "call.ended", "call_id": call_id, "reason": LOST})

    floor = Floor(url, prefix, hub, end_lost, **timing)
    await floor.start(address)
    await until(lambda: floor.up and floor.server in floor.servers)
    return Server(hub, floor, lost)


async def until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (state of another task, polled)
            await asyncio.sleep(0.01)


async def take(feed: Subscription[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    got = []
    async with asyncio.timeout(10):
        async for event in feed:
            got.append(event)
            if len(got) == count:
                return got
    return got


def call_events(call_id: str, channel: str = "web") -> list[dict[str, Any]]:
    return [
        {"type": "call.started", "call_id": call_id, "channel": channel},
        {"type": "transcript.final", "call_id": call_id, "turn": 1, "text": "hello"},
        {"type": "reply.end", "call_id": call_id, "turn": 1, "text": "hi"},
    ]


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["call_id"], e["type"]) for e in events]


async def test_each_call_is_seen_live_on_every_server_once(redis_url, live_prefix):  # noqa: F811
    async with servers(redis_url, live_prefix, 2) as (a, b):
        here, there = a.hub.subscribe(), b.hub.subscribe()
        events = [*call_events("c1"), {"type": "call.ended", "call_id": "c1", "reason": "hangup"}]
        for event in events:
            a.hub.publish(event)
        assert await take(there, 4) == events
        assert await take(here, 4) == events
        b.hub.publish({"type": "call.started", "call_id": "c2", "channel": "phone"})
        assert kinds(await take(here, 1)) == [("c2", "call.started")]
        assert kinds(await take(there, 1)) == [("c2", "call.started")]
        await asyncio.sleep(0.2)
        assert here._queue.empty() and there._queue.empty(), "nothing came twice"
        assert b.hub.live_calls == ["c2"] and a.hub.live_calls == ["c2"]
        assert a.floor.remote_calls() == ["c2"] and b.floor.remote_calls() == []


async def test_a_server_that_joins_late_sees_the_calls_in_progress(redis_url, live_prefix):  # noqa: F811
    async with servers(redis_url, live_prefix, 1) as (a,):
        for event in call_events("live") + call_events("over"):
            a.hub.publish(event)
        a.hub.publish({"type": "call.ended", "call_id": "over", "reason": "hangup"})
        await until(lambda: a.floor._written.is_set())
        late = await join(redis_url, live_prefix, "http://late")
        try:
            await until(lambda: late.hub.live_calls == ["live"])
            feed = late.hub.subscribe()
            assert await take(feed, 3) == call_events("live")
            a.hub.publish({"type": "transcript.final", "call_id": "live", "turn": 2, "text": "x"})
            assert kinds(await take(feed, 1)) == [("live", "transcript.final")]
            await asyncio.sleep(0.2)
            assert feed._queue.empty(), "what the snapshot held was not taken again"
        finally:
            await late.floor.stop()


async def test_a_step_into_a_call_is_sent_to_the_server_that_holds_it(redis_url, live_prefix):  # noqa: F811
    async with servers(redis_url, live_prefix, 2) as (a, b):
        a.hub.publish(call_events("c1")[0])
        await until(lambda: a.floor._written.is_set())
        await until(lambda: len(b.floor.servers) == 2)
        assert await b.floor.holder("c1") == "http://server-0"
        assert await a.floor.holder("c1") is None, "a server's own call is its own"
        assert await b.floor.holder("nobody") is None
        assert b.floor.others() == ["http://server-0"]
        b.floor.servers = {}  # as right after it joined, before it heard the others' heartbeats
        assert await b.floor.holder("c1") == "http://server-0"
        a.hub.publish({"type": "call.ended", "call_id": "c1", "reason": "hangup"})
        await until(lambda: a.floor._written.is_set())
        assert await b.floor.holder("c1") is None


async def test_a_server_that_lost_redis_for_a_while_catches_up(redis_url, live_prefix):  # noqa: F811
    async with servers(redis_url, live_prefix, 2) as (a, b):
        a.hub.publish(call_events("short")[0])
        for event in call_events("long"):
            a.hub.publish(event)
        await until(lambda: b.hub.live_calls == ["short", "long"])
        feed = b.hub.subscribe()
        assert len(await take(feed, 4)) == 4
        admin = redis.Redis.from_url(redis_url)
        name = f"voicedesk-{b.floor.server}-listening"
        [listening] = [c for c in admin.client_list("pubsub") if c["name"] == name]
        admin.client_kill_filter(_id=listening["id"])
        missed = [
            {"type": "call.ended", "call_id": "short", "reason": "hangup"},
            {"type": "transcript.final", "call_id": "long", "turn": 2, "text": "in the gap"},
        ]
        for event in missed:
            a.hub.publish(event)
        got = await take(feed, 2)
        ended_unseen = {"type": "call.ended", "call_id": "short", "reason": "unknown"}
        assert got == [missed[1], ended_unseen], "the gap from the snapshot, in order"
        a.hub.publish({"type": "transcript.final", "call_id": "long", "turn": 3, "text": "after"})
        assert [e.get("turn") for e in await take(feed, 1)] == [3]
        await asyncio.sleep(0.2)
        assert feed._queue.empty(), "nothing came twice"
        admin.close()


async def test_the_calls_of_a_server_gone_are_ended_once(redis_url, live_prefix):  # noqa: F811
    timing = {"heartbeat_s": 0.1, "lost_after_s": 2.0}
    async with servers(redis_url, live_prefix, 3, **timing) as (a, b, c):
        for event in call_events("voice") + call_events("chat", channel="text"):
            a.hub.publish(event)
        await until(lambda: b.hub.live_calls == ["voice", "chat"] == c.hub.live_calls)
        watching = b.hub.subscribe()
        assert len(await take(watching, 6)) == 6, "the calls so far"
        await a.floor.stop()  # its calls still in Redis, as after a crash
        ended = await take(watching, 1)
        assert ended == [{"type": "call.ended", "call_id": "voice", "reason": LOST}]
        await until(lambda: c.hub.live_calls == ["chat"])
        assert sorted(b.lost + c.lost) == ["voice"], "ended by one server"
        assert b.hub.live_calls == ["chat"], "a text session belongs to no server"


async def test_without_redis_the_calls_go_on(caplog):
    hub = LiveHub()
    floor = Floor("redis://127.0.0.1:1/0", "nowhere", hub, lambda _: None, outbox=5)
    await floor.start("http://here")
    feed = hub.subscribe()
    try:
        for n in range(20):
            hub.publish({"type": "transcript.final", "call_id": "c", "turn": n, "text": "x"})
        assert len(await take(feed, 20)) == 20, "this server's consoles have it all"
        assert 14 <= floor.dropped <= 15, "past the outbox, events for Redis are dropped"
        await until(lambda: not floor.up and "Redis is unavailable" in caplog.text)
        assert await asyncio.wait_for(floor.stop(), 2) is None
    finally:
        feed.close()


def test_a_lost_call_is_ended_in_the_records_with_what_was_recorded(tmp_path):
    settings = dataclasses.replace(Settings(), server=ServerSettings(data_dir=tmp_path))
    office = open_office(settings)
    try:
        feed = office.hub.subscribe()
        for call_id in ("recorded", "not-recorded", "over"):
            office.store.start_call(CallRecord(call_id, "call", started_at=1.0))
        assert office.recordings_dir is not None
        office.recordings_dir.mkdir(parents=True)
        (office.recordings_dir / "recorded.wav").write_bytes(b"RIFF")
        office.store.end_call("over", 2.0, "hangup", None)
        for call_id in ("recorded", "not-recorded", "over"):
            office.lost(call_id)
        assert office.store.flush(10)
        ends = {
            call_id: (detail.call.end_reason, detail.call.recording)
            for call_id in ("recorded", "not-recorded", "over")
            if (detail := office.store.call(call_id)) is not None
        }
        assert ends == {
            "recorded": (LOST, "recorded.wav"),
            "not-recorded": (LOST, None),
            "over": ("hangup", None),
        }
        shown = [feed._queue.get_nowait() for _ in range(3)]
        assert [(e["type"], e["reason"]) for e in shown] == [("call.ended", LOST)] * 3
    finally:
        office.close()


async def test_after_redis_forgets_the_calls_each_server_writes_its_own_again(
    redis_url,  # noqa: F811
    live_prefix,  # noqa: F811
):
    async with servers(redis_url, live_prefix, 2) as (a, b):
        a.hub.publish(call_events("c1")[0])
        await until(lambda: b.hub.live_calls == ["c1"])
        admin = redis.Redis.from_url(redis_url)
        admin.delete(f"{live_prefix}:calls", f"{live_prefix}:servers")  # as a restart does
        admin.close()
        async with asyncio.timeout(10):
            while await b.floor.holder("c1") != "http://server-0":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert b.hub.live_calls == ["c1"]


async def test_a_server_new_on_the_floor_ends_no_call_until_it_has_heard_redis_a_while(
    redis_url,  # noqa: F811
    live_prefix,  # noqa: F811
):
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    seconds, _ = admin.time()
    admin.hset(f"{live_prefix}:servers", "ghost", json.dumps({"url": "x", "seen": seconds - 60}))
    admin.hset(f"{live_prefix}:servers", "garbled", "not json")
    admin.hset(f"{live_prefix}:calls", "ghostly", json.dumps({"server": "ghost", "channel": "web"}))
    admin.hset(f"{live_prefix}:calls", "garbled", "[1, 2]")
    admin.publish(f"{live_prefix}:events", "not json either")
    started = asyncio.get_running_loop().time()
    async with servers(redis_url, live_prefix, 1, heartbeat_s=0.05, lost_after_s=1.0) as (a,):
        async with asyncio.timeout(10):
            while len(a.lost) < 2:  # noqa: ASYNC110  (each call is ended in its own step)
                await asyncio.sleep(0.02)
        assert asyncio.get_running_loop().time() - started >= 1.0, "not before it was steady"
        assert sorted(a.lost) == ["garbled", "ghostly"], "what names no live server is ended"
        a.hub.publish(call_events("after")[0])
        await until(lambda: a.floor._written.is_set() and a.floor.up)
    admin.close()
