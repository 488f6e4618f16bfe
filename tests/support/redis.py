"""A throwaway key prefix on the Redis server the tests of the shared live floor use.

The server is the one at `REDIS_URL` (127.0.0.1:6379 in CI). Without it the tests that need it
are skipped, or fail where the environment says CI=true. Each test gets its own prefix, and
its keys are deleted after it.

    from tests.support.redis import live_prefix, redis_url  # noqa: F401 (fixtures)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis

from tests.support.ci import unavailable

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """`REDIS_URL`, once it answers; skips (fails under CI=true) without a server."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except (redis.RedisError, OSError) as err:
        unavailable(f"no Redis server at {REDIS_URL}: {err}")
    return REDIS_URL


@pytest.fixture
def live_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted after the test."""
    prefix = f"voicedesk-test-{secrets.token_hex(6)}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
