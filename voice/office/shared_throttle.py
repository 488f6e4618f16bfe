"""The login throttle's counts in Redis (`live.url`), so that the servers behind one balancer
count a name's or an address's wrong passwords together: ten guesses lock the name on every
server, not on each. The rules are `voice.office.throttle`'s; only where the counts live and
whose clock they are read on (Redis's, one for all the servers) differ.

Keys, under `live.prefix` (P): `P:login:name:<name>` and `P:login:address:<address>`, hashes of
a `Record`'s fields, each forgotten `remembered_s` after its last wrong password.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError, WatchError

from voice.config import ConsoleSettings
from voice.office.throttle import (
    Kind,
    Lock,
    Record,
    Wait,
    count_failure,
    keys,
    remembered_s,
    wait_of,
    worst,
)

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0
"""Redis answers within this, or the login is counted by its server alone."""
SHARED_ERRORS = (RedisError, OSError)
"""What the counts fail with while Redis cannot be reached."""


class SharedCounts:
    """Implements `voice.office.login.Counts` in Redis. Use it from one event loop."""

    def __init__(self, url: str, prefix: str, settings: ConsoleSettings) -> None:
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        self._prefix = prefix
        self._settings = settings

    def _key(self, kind: Kind, key: str) -> str:
        return f"{self._prefix}:login:{kind}:{key}"

    async def check(self, name: str, address: str) -> Wait | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for kind, key in keys(name, address):
                pipe.hgetall(self._key(kind, key))
            now, *found = await pipe.execute()
        at = _seconds(now)
        return worst(wait_of(_record(fields), at) for fields in found)

    async def failed(self, name: str, address: str) -> list[Lock]:
        locks = []
        for kind, key in keys(name, address):
            locked_until = await self._fail(self._key(kind, key))
            if locked_until is not None:
                locks.append(Lock(kind, key, locked_until))
        return locks

    async def _fail(self, key: str) -> float | None:
        """Count a wrong password under `key`, however many servers count at once (optimistic:
        a count that raced another is read and counted again). When it was locked, until when
        (Redis's clock)."""
        while True:
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    now = _seconds(await pipe.time())
                    record = _record(await pipe.hgetall(key)) or Record(since=now)
                    locked = count_failure(record, now, self._settings)
                    pipe.multi()
                    # redis-py's stubs want keys of a union type; str keys are what it takes
                    pipe.hset(key, mapping=dataclasses.asdict(record))  # type: ignore[arg-type]
                    pipe.expire(key, int(remembered_s(self._settings)) + 1)
                    await pipe.execute()
                except WatchError:
                    continue
            return record.locked_until if locked else None

    async def succeeded(self, name: str, address: str) -> None:
        await self._redis.delete(*(self._key(kind, key) for kind, key in keys(name, address)))

    async def close(self) -> None:
        await self._redis.aclose()


def _seconds(time: Any) -> float:
    """Redis's TIME, (seconds, microseconds), in seconds."""
    seconds, micros = time
    return float(seconds) + float(micros) / 1e6


def _record(fields: Any) -> Record | None:
    """A record from its hash's fields (text, decoded); None for no hash."""
    if not fields:
        return None
    return Record(
        failures=int(fields["failures"]),
        since=float(fields["since"]),
        wait_until=float(fields["wait_until"]),
        locked_until=float(fields["locked_until"]),
    )
