"""A supervisor without a browser: logs in over the API, takes and hands back calls, and hears
and speaks in a call through its audio websocket (docs/console.md, "The audio websocket")."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from agent.types import Agent
from tests.support.servers import Models, make_services
from voice.channels.codecs import float_to_int16, int16_to_float
from voice.config import ServerSettings, Settings
from voice.office.backoffice import Office, open_office
from voice.office.tap import ASSISTANT, CALLER, CLEAR
from voice.ops.server import start_server

FRAME_SAMPLES = 320
"""20 ms at 16 kHz, as the console page sends its microphone."""
PASSWORD = "correct horse battery"
"""Every supervisor's password on an `office_server`."""


@dataclasses.dataclass
class OfficeServer:
    base: str
    """http://127.0.0.1:PORT"""
    office: Office

    @property
    def call_url(self) -> str:
        return self.base.replace("http", "ws", 1) + "/call"


@contextlib.asynccontextmanager
async def office_server(
    models: Models, agent: Agent, data_dir: Path, supervisors: tuple[str, ...] = ("alice", "bob")
) -> AsyncIterator[OfficeServer]:
    """A server on a free loopback port with its records in `data_dir` and `supervisors` who
    log in with `PASSWORD`."""
    settings = dataclasses.replace(Settings(), server=ServerSettings(data_dir=data_dir))
    office = open_office(settings)
    for name in supervisors:
        office.users.add(name, PASSWORD)
    runner, port = await start_server(make_services(models, agent), "127.0.0.1", 0, office)
    try:
        yield OfficeServer(f"http://127.0.0.1:{port}", office)
    finally:
        await runner.cleanup()
        office.close()


class Supervisor:
    """One logged-in supervisor on a server at `base` (http://host:port)."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http = http
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}

    async def post(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.base + path, headers=self.headers) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.http.get(self.base + path, headers=self.headers) as response:
            return response.status, await response.json()

    @contextlib.asynccontextmanager
    async def audio(self, call_id: str) -> AsyncIterator[CallAudio]:
        url = self.base.replace("http", "ws", 1) + f"/api/calls/{call_id}/audio"
        async with self.http.ws_connect(url, headers=self.headers) as ws:
            hello = await ws.receive_json(timeout=10)
            assert hello["type"] == "audio" and hello["sample_rate"] == 16_000
            audio = CallAudio(ws)
            reader = asyncio.create_task(audio.read())
            try:
                yield audio
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)


@contextlib.asynccontextmanager
async def supervisor(base: str, name: str, password: str) -> AsyncIterator[Supervisor]:
    # Kept-alive connections are let go well before the server closes idle ones
    # (`server.header_timeout_s`): a request sent as it closes one fails.
    connector = aiohttp.TCPConnector(keepalive_timeout=2.0)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(
            base + "/api/login", json={"name": name, "password": password}
        ) as response:
            assert response.status == 200, await response.text()
            token = (await response.json())["token"]
        yield Supervisor(http, base, token)


class CallAudio:
    """A call's audio websocket: what came, by kind, with the time it came; and a microphone."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[tuple[float, int, bytes]] = []
        """(monotonic time, kind, PCM16 at 16 kHz) per frame."""
        self.messages: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                self.frames.append((time.monotonic(), message.data[0], message.data[1:]))
            elif message.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))
            self.changed.set()

    def heard(self, kind: int = CALLER, since: float = 0.0) -> np.ndarray:
        """The audio of `kind` (CALLER, ASSISTANT) that came after `since`, float32."""
        assert kind in (CALLER, ASSISTANT, CLEAR)
        chunks = [
            np.frombuffer(data, "<i2") for at, k, data in self.frames if k == kind and at >= since
        ]
        return int16_to_float(np.concatenate(chunks)) if chunks else np.zeros(0, np.float32)

    async def speak(self, samples: np.ndarray, realtime: bool = True) -> None:
        """Say float32 16 kHz `samples` into the call in 20 ms frames (at the pace they play)."""
        pcm = float_to_int16(samples)
        started = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), FRAME_SAMPLES)):
            await self.ws.send_bytes(pcm[offset : offset + FRAME_SAMPLES].astype("<i2").tobytes())
            if realtime:
                await asyncio.sleep(max(0.0, started + (index + 1) * 0.02 - time.monotonic()))
