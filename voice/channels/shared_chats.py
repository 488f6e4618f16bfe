"""Text-chat sessions in Redis (`live.url`), so that `POST /api/chat` behind a load balancer
keeps a conversation whichever server each message reaches, with no sticky sessions.

Keys, under `live.prefix` (P):

    P:chat:<session id>       hash: call_id, started_at, turns (the last message's number)
    P:chat:<session id>:said  list: the session's latest exchanges, JSON, oldest first
    P:chats:due               sorted set: call id → when the session goes idle (Redis's clock)

A message is counted, its session begun or continued and its memory read in one script, so
two servers that take messages of one session at once give them different numbers. Every
server sweeps `P:chats:due`; the one that takes a session off it ends that session's call, so
a session is ended once, by whichever server is there, even when the server it began on has
stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from agent.types import Exchange
from voice.channels.chat import ChatTurn, EndSession, new_call_id

log = logging.getLogger(__name__)

SWEEP_S = 1.0
"""How often a server looks for sessions gone idle: a session ends at most this late."""
SWEEP_BATCH = 100
"""Sessions ended in one sweep at most."""

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local idle, memory = tonumber(ARGV[1]), tonumber(ARGV[3])
local call = redis.call('HGET', KEYS[1], 'call_id')
if call then
  local due = redis.call('ZSCORE', KEYS[3], call)
  if (not due) or tonumber(due) <= now then call = false end
end
if not call then
  call = ARGV[2]
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'call_id', call, 'started_at', tostring(now))
end
local turn = redis.call('HINCRBY', KEYS[1], 'turns', 1)
redis.call('ZADD', KEYS[3], now + idle, call)
local ttl = math.ceil(idle * 2) + 60
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
local said = {}
if memory > 0 then said = redis.call('LRANGE', KEYS[2], -memory, -1) end
return {call, redis.call('HGET', KEYS[1], 'started_at'), turn, said}
"""
"""A message counted: (call id, started at, its number, the exchanges remembered)."""

_REMEMBER = """
if redis.call('HGET', KEYS[1], 'call_id') ~= ARGV[1] then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""
"""An exchange remembered, unless its session ended while it was answered."""

_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local due = redis.call(
  'ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
for i = 1, #due, 2 do redis.call('ZREM', KEYS[1], due[i]) end
return due
"""
"""The calls of the sessions gone idle, each with when it went idle, taken off the set by this
server alone."""


class SharedChats:
    """Implements `voice.channels.chat.Chats` in Redis.

    A message that finds Redis down fails (`RedisError`): the chat handler answers 503, and
    the session goes on when Redis is back.
    """

    def __init__(
        self, url: str, prefix: str, idle_s: float, memory_turns: int, end: EndSession
    ) -> None:
        if idle_s <= 0:
            raise ValueError(f"a session's idle time must be more than 0 s, not {idle_s:g}")
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=5.0, socket_connect_timeout=5.0
        )
        self._prefix = prefix
        self._idle_s = idle_s
        self._memory = memory_turns
        self._end = end

    def _keys(self, session_id: str) -> list[str]:
        session = f"{self._prefix}:chat:{session_id}"
        return [session, f"{session}:said", f"{self._prefix}:chats:due"]

    async def take(self, session_id: str) -> ChatTurn:
        keys = self._keys(session_id)
        reply: Any = await self._redis.eval(
            _TAKE, len(keys), *keys, self._idle_s, new_call_id(), self._memory
        )
        call_id, started_at, turn, said = reply
        exchanges = tuple(_exchange(json.loads(item)) for item in said)
        return ChatTurn(session_id, call_id, float(started_at), int(turn), exchanges)

    async def remember(self, turn: ChatTurn, exchange: Exchange) -> None:
        if not self._memory:
            return
        keys = self._keys(turn.session_id)[:2]
        said = json.dumps(dataclasses.asdict(exchange))
        await self._redis.eval(_REMEMBER, 2, *keys, turn.call_id, said, self._memory)

    async def end_idle(self) -> None:
        key = f"{self._prefix}:chats:due"
        while True:
            try:
                due: list[str] = await self._redis.eval(_DUE, 1, key, SWEEP_BATCH)  # type: ignore[misc]
            except (RedisError, OSError) as err:
                log.warning("chat sessions: cannot look for idle ones in Redis: %s", err)
                due = []
            for call_id, idle_at in zip(due[::2], due[1::2], strict=True):
                self._end(call_id, "idle", float(idle_at))
            if len(due) < 2 * SWEEP_BATCH:
                await asyncio.sleep(SWEEP_S)

    async def close(self) -> None:
        """Nothing to end: the sessions go on on the other servers, and whichever server is
        there when one goes idle ends it."""
        await self._redis.aclose()


def _exchange(fields: dict[str, Any]) -> Exchange:
    return Exchange(
        fields["question"],
        fields["answer"],
        tuple(fields.get("rules", ())),
        tuple(fields.get("sources", ())),
    )
