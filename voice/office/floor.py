"""The live floor that the servers of one deployment share through Redis (`live.url`;
docs/deploy.md).

Each server publishes its own calls' events and receives the others' into its `LiveHub`, so
that a console on any server shows every call. Redis also says which server holds which call,
so that a supervisor's step into a call is passed to that server (`voice.office.relay`), and
lets the servers notice one that stopped without ending its calls: another ends them in the
records (`server_lost`).

Keys, under `live.prefix` (P):

    P:events      pub/sub: {"from": server, "n": its event number, "event": {...}}
    P:calls       hash: call id → {"server", "channel", "started": its call.started message}
    P:call:<id>   list: the call's later messages, the last `HISTORY`
    P:servers     hash: server → {"url", "seen": Redis's clock}

A server writes each batch of its messages in one transaction (MULTI … PUBLISH … EXEC). So a
server that joins, or comes back after losing Redis, subscribes first, then reads every live
call in one script, and then passes over the channel's messages that it already read: each
server's messages are numbered, and the snapshot holds every message numbered up to the
highest it shows.

The floor never holds up a call: a server's events wait for Redis in a bounded queue, and
are dropped (counted) when Redis is gone for long; calls and records go on without it. Each
server knows its own live calls, and writes them into `P:calls` again whenever Redis comes back
or an event was dropped, so the registry heals after an outage or a restart of Redis (which
need keep nothing on disk).

A server ends another's calls as lost only once it has itself heard Redis for `lost_after_s`
without a break, so an outage of Redis, which silences every server alike, ends nothing. A
server cut off from Redis alone while its calls go on is ended by the others; when it comes
back it registers its calls again, and their real end still reaches the records (`END_CALL`
lets a call's own end replace `server_lost`).

Redis is trusted: a server passes supervisors' requests, with their credentials, to the URLs
the servers advertise there. Keep it on the servers' network, with a password. The scripts
name keys the snapshot does not declare: one Redis (or a primary and its replicas), not a
Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis
from aiohttp import ClientSession, DummyCookieJar, TCPConnector
from redis.exceptions import RedisError

from voice.office.live import HISTORY, LiveHub
from voice.ops.stopping import stop_all

log = logging.getLogger(__name__)

OUTBOX = 10_000
"""Events that may wait for Redis; past this the newest are dropped."""
BATCH = 200
"""Events written to Redis in one transaction at most."""
HEARTBEAT_S = 2.0
"""How often a server says it is alive, and looks for servers that are not."""
LOST_AFTER_S = 15.0
"""A server silent this long is gone: its calls are ended in the records (`server_lost`)."""
RETRY_S = 1.0
"""How long to wait before trying Redis again after it failed."""
CALL_TTL_S = 7200
"""A call's history in Redis outlives its last event by this much at most (a server that
stopped writing it is ended as lost long before)."""
TIMEOUT_S = 5.0
"""Redis answers a command within this, or it counts as down."""
TEXT = "text"
"""The channel of text-chat sessions: they belong to no server (`voice.channels.chat`)."""

_SNAPSHOT = """
local calls = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #calls, 2 do
  out[#out + 1] = {calls[i], calls[i + 1], redis.call('LRANGE', ARGV[1] .. calls[i], 0, -1)}
end
return out
"""
"""Every live call with its messages, read at one instant."""


class Floor:
    """This server's place on the shared floor. One per server, used from its event loop;
    `start` it once the server listens, `stop` it after its calls have ended.

    Args:
        url: The Redis server (`live.url`).
        prefix: What the keys start with (`live.prefix`).
        hub: This server's live feed: its events go out, the other servers' come in.
        on_lost: Called with the id of a call whose server is gone, once across the servers
            (the one that notices it first): end it in the records.
        heartbeat_s, lost_after_s, outbox: `HEARTBEAT_S`, `LOST_AFTER_S`, `OUTBOX`.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        hub: LiveHub,
        on_lost: Callable[[str], None],
        heartbeat_s: float = HEARTBEAT_S,
        lost_after_s: float = LOST_AFTER_S,
        outbox: int = OUTBOX,
    ) -> None:
        self.server = f"{socket.gethostname()}-{secrets.token_hex(4)}"
        """This server's name on the floor, new each time it starts."""
        self.url = ""
        """How the other servers reach this one."""
        self.up = False
        """Whether Redis answered the last time it was asked."""
        self.dropped = 0
        """Events that never reached Redis: it was down while `OUTBOX` of them waited."""
        self.servers: dict[str, str] = {}
        """The servers alive at the last heartbeat, by name: their URLs (this one included)."""
        self._prefix = prefix
        self._hub = hub
        self._on_lost = on_lost
        self._heartbeat_s = heartbeat_s
        self._lost_after_s = lost_after_s
        self._told_down = False
        self._steady_since: float | None = None
        """When Redis last began answering without a break (the loop's clock)."""
        self._resync = False
        """The registry must be written again: Redis was lost, or an event was dropped."""
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": TIMEOUT_S,
            "socket_keepalive": True,
            "socket_keepalive_options": _KEEPALIVE,
        }
        self._redis = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_S, client_name=f"voicedesk-{self.server}", **options
        )
        self._listening = redis.Redis.from_url(
            url, client_name=f"voicedesk-{self.server}-listening", **options
        )
        """The subscriber's own client: it waits for messages with no timeout (TCP keepalive
        notices a connection that died)."""
        self._outbox: asyncio.Queue[tuple[int, dict[str, Any], str]] = asyncio.Queue(outbox)
        self._written = asyncio.Event()
        """Set while no event waits for Redis."""
        self._written.set()
        self._numbered = 0
        self._own: dict[str, tuple[dict[str, Any], str]] = {}
        """This server's live calls: their `call.started` event and its message."""
        self._remote: dict[str, str] = {}
        """The other servers' calls that this server's hub shows live: their channels."""
        self._tasks: list[asyncio.Task[None]] = []
        self._client: ClientSession | None = None

    @property
    def client(self) -> ClientSession:
        """The HTTP client for the other servers (`voice.office.relay`), while on the floor."""
        assert self._client is not None, "start the floor first"
        return self._client

    def key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    async def start(self, url: str, idle_s: float = 5.0) -> None:
        """Join the floor, reachable by the other servers at `url`. Redis being down is no
        reason not to serve: the floor keeps trying in the background.

        A connection to another server is kept for reuse `idle_s` at most: less than that
        server's `server.header_timeout_s`, after which it closes an idle one (a request sent
        on a connection as it closes fails)."""
        self.url = url
        self._client = ClientSession(
            connector=TCPConnector(keepalive_timeout=idle_s), cookie_jar=DummyCookieJar()
        )
        self._hub.relay = self.relay
        self._tasks = [
            asyncio.create_task(_forever("heartbeat", self._beat_forever)),
            asyncio.create_task(_forever("writer", self._write_forever)),
            asyncio.create_task(_forever("reader", self._read_forever)),
        ]
        log.info("live floor: %s on %s, reached at %s", self.server, self._where(), url)

    async def stop(self, flush_s: float = 2.0) -> None:
        """Leave the floor, after the events still waiting are written (for `flush_s` at
        most)."""
        if self.up:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_s):
                    await self._written.wait()
        self._hub.relay = None
        await stop_all(lambda: set(self._tasks), "the live floor")
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await self._redis.hdel(self.key("servers"), self.server)
        await self._redis.aclose()
        await self._listening.aclose()
        if self._client is not None:
            await self._client.close()

    def relay(self, event: dict[str, Any]) -> None:
        """An event of this server's calls, for the other servers; never waits, never raises."""
        try:
            message = self._message(event)
        except (TypeError, ValueError) as err:
            log.error("live floor: an event of type %r not sent: %s", event.get("type"), err)
            return
        call_id = event.get("call_id")
        if call_id and event["type"] == "call.started":
            self._own[call_id] = (event, message)
        elif call_id and event["type"] == "call.ended":
            self._own.pop(call_id, None)
            self._remote.pop(call_id, None)  # one this server ended for another
        try:
            self._outbox.put_nowait((self._numbered, event, message))
            self._written.clear()
        except asyncio.QueueFull:
            if not self.dropped:
                log.error("live floor: Redis is down; this server's call events are dropped")
            self.dropped += 1
            self._resync = True

    def _message(self, event: dict[str, Any]) -> str:
        self._numbered += 1
        return json.dumps({"from": self.server, "n": self._numbered, "event": event})

    def _entry(self, started: dict[str, Any], message: str) -> str:
        """A call's entry in `P:calls`."""
        return json.dumps(
            {"server": self.server, "channel": started.get("channel"), "started": message}
        )

    async def shared_secret(self, name: str) -> bytes:
        """A random secret every server of the deployment shares (the first to ask makes it),
        kept in Redis as long as Redis keeps it.

        Raises:
            RedisError, OSError: Redis cannot be reached.
        """
        made = secrets.token_hex(32)
        found = await self._redis.set(self.key("secret", name), made, nx=True, get=True)
        return bytes.fromhex(str(found) if found is not None else made)

    async def holder(self, call_id: str) -> str | None:
        """The URL of the server that holds `call_id`, when that is another server."""
        entry = await self._redis.hget(self.key("calls"), call_id)
        if entry is None:
            return None
        server = _parsed(entry).get("server")
        if not isinstance(server, str) or server == self.server:
            return None
        known = self.servers.get(server)
        if known is not None:
            return known
        # A server that joined since the last heartbeat: asked of Redis, not of that list.
        url = _parsed(await self._redis.hget(self.key("servers"), server)).get("url")
        return url if isinstance(url, str) else None

    def remote_calls(self) -> list[str]:
        """The other servers' live calls (text-chat sessions aside), as far as this server
        has heard."""
        return [call_id for call_id, channel in self._remote.items() if channel != TEXT]

    def others(self) -> list[str]:
        """The URLs of the other servers alive at the last heartbeat."""
        return [
            url for name, url in self.servers.items() if self.server != name and url != self.url
        ]

    # ------------------------------------------------------------ writing

    async def _write_forever(self) -> None:
        batch: list[tuple[int, dict[str, Any], str]] = []
        while True:
            if not batch:
                batch.append(await self._outbox.get())
            while len(batch) < BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    for _, event, message in batch:
                        self._stage(pipe, event, message)
                    await pipe.execute()
            except (RedisError, OSError) as err:
                self._down(err)
                await asyncio.sleep(RETRY_S)
                continue
            batch = []
            if self._outbox.empty():
                self._written.set()
            self._up()

    def _stage(self, pipe: Any, event: dict[str, Any], message: str) -> None:
        call_id = event.get("call_id")
        if call_id:
            history = self.key("call", call_id)
            if event["type"] == "call.started":
                pipe.hset(self.key("calls"), call_id, self._entry(event, message))
                pipe.delete(history)
            elif event["type"] == "call.ended":
                pipe.hdel(self.key("calls"), call_id)
                pipe.delete(history)
            else:
                pipe.rpush(history, message)
                pipe.ltrim(history, -HISTORY, -1)
                pipe.expire(history, CALL_TTL_S)
        pipe.publish(self.key("events"), message)

    async def _write_own_calls(self) -> None:
        """Write this server's live calls into the registry again, and take out of it what it
        holds of this server's that has ended; the other servers hear of both."""
        calls_key = self.key("calls")
        registered: dict[str, str] = await self._redis.hgetall(calls_key)  # type: ignore[assignment]
        async with self._redis.pipeline(transaction=True) as pipe:
            for call_id, (started, message) in self._own.items():
                if call_id not in registered:  # reaped as lost, or never written: news again
                    message = self._message(started)
                    self._own[call_id] = (started, message)
                    pipe.publish(self.key("events"), message)
                pipe.hset(calls_key, call_id, self._entry(started, message))
            for call_id, value in registered.items():
                if _parsed(value).get("server") == self.server and call_id not in self._own:
                    ended = {"type": "call.ended", "call_id": call_id, "reason": "unknown"}
                    pipe.hdel(calls_key, call_id)
                    pipe.publish(self.key("events"), self._message(ended))
            await pipe.execute()

    # ------------------------------------------------------------ reading

    async def _read_forever(self) -> None:
        seen: dict[str, int] = {}
        """The highest message number taken from each server."""
        while True:
            try:
                async with self._listening.pubsub() as pubsub:
                    await pubsub.subscribe(self.key("events"))
                    await _subscribed(pubsub)
                    await self._catch_up(seen)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._take(_parsed(message["data"]), seen)
            except (RedisError, OSError) as err:
                self._down(err)
                await asyncio.sleep(RETRY_S)

    async def _catch_up(self, seen: dict[str, int]) -> None:
        """Every live call of the other servers as Redis has it now, into the hub: the
        messages not taken yet, in order, and an end for each call shown live that has
        ended meanwhile."""
        calls = await self._redis.eval(_SNAPSHOT, 1, self.key("calls"), self.key("call", ""))
        messages, live = [], set()
        for call_id, entry, later in calls:
            started = _parsed(entry)
            if started.get("server") in (None, self.server):
                continue
            live.add(call_id)
            messages += [_parsed(started.get("started", "")), *map(_parsed, later)]
        for message in sorted(messages, key=lambda m: m.get("n", 0)):
            self._take(message, seen)
        for call_id in set(self._remote) - live:
            del self._remote[call_id]
            self._hub.receive({"type": "call.ended", "call_id": call_id, "reason": "unknown"})

    def _take(self, message: dict[str, Any], seen: dict[str, int]) -> None:
        try:
            server, n, event = message["from"], int(message["n"]), dict(message["event"])
            kind, call_id = str(event["type"]), event.get("call_id")
        except (KeyError, TypeError, ValueError):
            log.warning("live floor: a message of no known shape passed over")
            return
        if server == self.server or n <= seen.get(server, 0):
            return
        seen[server] = n
        if kind == "call.started" and call_id:
            self._remote[call_id] = event.get("channel", "")
        elif kind == "call.ended" and call_id:
            self._remote.pop(call_id, None)
        self._hub.receive(event)

    # ------------------------------------------------------------ servers alive and lost

    async def _beat_forever(self) -> None:
        while True:
            try:
                await self._beat()
                self._up()
                if self._resync:
                    self._resync = False
                    await self._write_own_calls()
            except (RedisError, OSError) as err:
                self._down(err)
            await asyncio.sleep(self._heartbeat_s)

    async def _beat(self) -> None:
        """Say this server is alive; forget the servers that are not, and end their calls."""
        seconds, micros = await self._redis.time()
        now = seconds + micros / 1e6
        servers_key, calls_key = self.key("servers"), self.key("calls")
        beat = json.dumps({"url": self.url, "seen": now})
        if await self._redis.hset(servers_key, self.server, beat):
            self._resync = True  # new here: Redis restarted, or the others took it for gone
        alive: dict[str, str] = {}
        servers: dict[str, str] = await self._redis.hgetall(servers_key)  # type: ignore[assignment]
        steady = self._steady_since is not None and (
            asyncio.get_running_loop().time() - self._steady_since > self._lost_after_s
        )
        for name, value in servers.items():
            entry = _parsed(value)
            seen, url = entry.get("seen"), entry.get("url")
            fresh = isinstance(seen, int | float) and now - seen <= self._lost_after_s
            if fresh and isinstance(url, str):
                alive[name] = url
                continue
            if steady and await self._redis.hdel(servers_key, name):
                log.warning("live floor: server %s stopped answering; its calls are ended", name)
        self.servers = alive
        if not steady:  # heard Redis too briefly to tell a server gone from an outage
            return
        calls: dict[str, str] = await self._redis.hgetall(calls_key)  # type: ignore[assignment]
        for call_id, value in calls.items():
            entry = _parsed(value)
            if entry.get("server") in alive or entry.get("channel") == TEXT:
                continue
            if await self._redis.hdel(calls_key, call_id):  # only one server ends it
                log.warning("call %s ended: its server %s is gone", call_id, entry.get("server"))
                try:
                    self._on_lost(call_id)
                except Exception:
                    log.exception("call %s: ending it as lost failed", call_id)
                await self._redis.delete(self.key("call", call_id))

    # ------------------------------------------------------------ state

    def _up(self) -> None:
        if self._told_down:
            log.info("live floor: Redis answers again (%s)", self._where())
        if self._steady_since is None:
            self._steady_since = asyncio.get_running_loop().time()
        self.up, self._told_down = True, False

    def _down(self, err: BaseException) -> None:
        if not self._told_down:
            log.error("live floor: Redis is unavailable (%s): %s", self._where(), err)
        self.up, self._told_down, self._steady_since = False, True, None
        self._resync = True

    def _where(self) -> str:
        kwargs = self._redis.connection_pool.connection_kwargs
        return f"redis {kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


_KEEPALIVE: dict[int, int] = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}
"""A connection to Redis that died unseen is noticed within about 25 s (where the OS allows)."""


async def _forever(what: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` until cancelled: an error it did not expect is logged, and it starts again."""
    while True:
        try:
            await work()
        except Exception:
            log.exception("live floor: the %s failed; it starts again", what)
            await asyncio.sleep(RETRY_S)


async def _subscribed(pubsub: Any) -> None:
    """Wait for Redis to confirm the subscription, so that the snapshot read next cannot miss
    what is published meanwhile."""
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            message = await pubsub.get_message(timeout=TIMEOUT_S)
            if message is not None and message["type"] == "subscribe":
                return


def _parsed(text: Any) -> dict[str, Any]:
    """A JSON object from Redis; {} for anything else (a message of another version, say)."""
    try:
        found = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
