"""Stopping `voicedesk serve` with SIGTERM (a service manager) or SIGINT (Ctrl-C): new calls are
refused, the calls in progress finish their turn, then close with 1001, and the process exits
cleanly. The real command in a subprocess, with its model workers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import aiohttp
import pytest

from tests.support.servers import voicedesk
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient

pytestmark = pytest.mark.models

PCM16 = AudioFormat("pcm16", 16000)


class Served:
    """`voicedesk serve` on a free port, its log lines collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.port: int | None = None
        self._reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            found = re.search(r"serving callers on ws://127\.0\.0\.1:(\d+)/call", line)
            if found:
                self.port = int(found.group(1))

    async def started(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.port is None:
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start:\n" + "\n".join(self.lines))
            await asyncio.sleep(0.1)
        return self.port

    async def finished(self) -> None:
        await self._reading


async def serve(tmp_path, grace_s: float) -> Served:
    env = {
        **os.environ,
        "VOICEDESK_SERVER_SHUTDOWN_GRACE_S": str(grace_s),
        "VOICEDESK_LLM": "extractive",
        "VOICEDESK_DATA_DIR": str(tmp_path / "data"),
    }
    process = await asyncio.create_subprocess_exec(
        *voicedesk("serve", "--port", "0"),
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return Served(process)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_lets_the_calls_finish_their_turn(tmp_path, signum, say):
    served = await serve(tmp_path, grace_s=30)
    try:
        port = await served.started()
        url = f"ws://127.0.0.1:{port}/call"
        async with CallClient(url, PCM16) as call:
            spoken = await call.ask(say("Do you ship on weekends?"), realtime=False)
            await call.send_text("how long is the warranty")  # a reply of some seconds
            await call.wait_for(lambda e: e["type"] == "reply.text" and e["turn"] == 2, timeout=60)
            signalled = time.monotonic()
            served.process.send_signal(signum)
            async with aiohttp.ClientSession() as http:
                # Once the server has taken the signal (a loaded machine takes a while) it is
                # not ready, and new calls are refused.
                async with asyncio.timeout(30):
                    while True:
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                            if ready.status == 503:
                                break
                        await asyncio.sleep(0.05)
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(url)
            end = await call.wait_for(
                lambda e: e["type"] == "reply.end" and e["turn"] == 2, timeout=60
            )
            await call.wait_for(lambda e: e["type"] == "end", timeout=30)
            closed_after = time.monotonic() - signalled
        code = await asyncio.wait_for(served.process.wait(), 60)
        await served.finished()
    finally:
        if served.process.returncode is None:
            served.process.kill()
            await served.process.wait()
    assert refused.value.status == 503
    assert not end["interrupted"] and end["heard"] == end["text"] and end["text"]
    assert call.events[-1] == {"type": "end", "reason": "server_shutdown"}
    assert call.close_code == 1001
    assert closed_after < 30
    assert code == 0, "\n".join(served.lines)
    log = "\n".join(served.lines)
    assert "shutting down" in log and "stopped" in log
    assert "Traceback" not in log, log
    # The workers that served the calls ended leaving nothing behind.
    assert "ship" in spoken.transcript.lower() and spoken.reply
    assert "leaked" not in log, log


async def test_the_grace_period_bounds_the_wait(tmp_path):
    served = await serve(tmp_path, grace_s=1)
    try:
        port = await served.started()
        async with CallClient(f"ws://127.0.0.1:{port}/call", PCM16) as call:
            await call.send_text("my smart bulb keeps flashing red, what should I do")
            await call.wait_for(lambda e: e["type"] == "reply.text", timeout=60)
            signalled = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            await call.wait_for(lambda e: e["type"] == "end", timeout=30)
            closed_after = time.monotonic() - signalled
        assert await asyncio.wait_for(served.process.wait(), 60) == 0
        await served.finished()
    finally:
        if served.process.returncode is None:
            served.process.kill()
            await served.process.wait()
    assert call.close_code == 1001
    assert closed_after < 5, "the reply (over 10 s of speech) was cut at the grace period"
    assert not [e for e in call.events if e["type"] == "reply.end"], "it never played out"
