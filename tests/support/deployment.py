"""The deployment of docs/deploy.md, started for a test or a benchmark: `voicedesk serve`
processes on one PostgreSQL and one Redis, behind Debian's HAProxy.

The balancer's configuration is the one docs/deploy.md gives, on loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tests.support.ci import unavailable
from tests.support.servers import free_port, voicedesk

ROOT = Path(__file__).parents[2]
PASSWORD = "a long enough secret"
HAPROXY_CONFIG = """
global
    maxconn 200

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    timeout check 2s
    option http-server-close
    option forwardfor

frontend voicedesk
    bind 127.0.0.1:{port}
    default_backend voicedesk

frontend stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats

backend voicedesk
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    option redispatch
    retries 2
{servers}
"""
SERVER_LINE = "    server {name} 127.0.0.1:{port} check inter 500ms rise 1 fall 2"
BUSY_LINE = "    server {name}-busy 127.0.0.1:{port} backup"
"""Each server again, unchecked, for when every server is full: it tells the caller the lines
are busy (docs/deploy.md)."""
NAMES = ("one", "two", "three", "four")


def haproxy() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if found is None:
        unavailable("no haproxy (apt-get install haproxy)")
    return found


def environment(
    records_url: str, redis: str, prefix: str, data: Path, **more: str
) -> dict[str, str]:
    """The environment of every server of one deployment: its records in `records_url`, its
    floor in `redis` under `prefix`, its recordings in `data`/recordings; `more` settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOICEDESK_")}
    return {
        **clean,
        "PYTHONPATH": str(ROOT),
        "VOICEDESK_RECORDS_URL": records_url,
        "VOICEDESK_RECORDS_RECORDINGS_DIR": str(data / "recordings"),
        "VOICEDESK_LIVE_URL": redis,
        "VOICEDESK_LIVE_PREFIX": prefix,
        "VOICEDESK_LLM": "extractive",
        **more,
    }


@contextlib.asynccontextmanager
async def serving(env: dict[str, str], data: Path, port: int) -> AsyncIterator[int]:
    """`voicedesk serve` on `port`, its data in `data`/`port`, stopped with SIGTERM after; it
    must exit 0. Gives its process id."""
    log = (data / f"serve-{port}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *voicedesk("serve", "--port", str(port), "--data-dir", str(data / str(port))),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        yield process.pid
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    except BaseException:
        log.flush()
        tail = (data / f"serve-{port}.log").read_text(errors="replace").splitlines()[-40:]
        print(f"--- the log of the server on port {port}, its end:", *tail, sep="\n")
        raise
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


@contextlib.asynccontextmanager
async def balancer(data: Path, *ports: int) -> AsyncIterator[str]:
    """HAProxy in front of the servers on `ports`, once it sees them all up; its base URL."""
    port, stats_port = free_port(), free_port()
    names = NAMES[: len(ports)]
    pairs = list(zip(names, ports, strict=True))
    lines = [SERVER_LINE.format(name=n, port=p) for n, p in pairs]
    lines += [BUSY_LINE.format(name=n, port=p) for n, p in pairs]
    config = data / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(port=port, stats_port=stats_port, servers="\n".join(lines))
    )
    log = (data / "haproxy.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        haproxy(), "-db", "-f", str(config), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        await _until_up(f"http://127.0.0.1:{stats_port}/stats;csv", set(names), process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()
        log.close()


async def _until_up(stats: str, names: set[str], process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 180  # the models load first
    async with aiohttp.ClientSession() as http:
        while True:
            assert process.returncode is None, "haproxy stopped"
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(stats) as response:
                    rows = (await response.text()).splitlines()
                up = {r.split(",")[1] for r in rows if r.startswith("voicedesk,") and ",UP," in r}
                if names <= up:
                    return
            assert time.monotonic() < deadline, "the servers did not come up behind haproxy"
            await asyncio.sleep(0.5)


async def add_supervisor(env: dict[str, str], name: str = "alice") -> None:
    """A supervisor `name` with `PASSWORD`, added with `voicedesk user add`."""
    process = await asyncio.create_subprocess_exec(
        *voicedesk("user", "add", name, "--password-stdin"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    output, _ = await process.communicate(PASSWORD.encode() + b"\n")
    assert process.returncode == 0, output.decode()
