"""What a supervisor watched live is what the call history keeps: a real server on a socket, real
faster-whisper and Piper, a scripted agent, the live feed (`/api/live`) against the record."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.types import AnswerEnd, AnswerEvent, AnswerText, Exchange
from tests.support.fakes import ScriptedAgent
from tests.support.servers import make_services
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient
from voice.config import ServerSettings, Settings
from voice.office.backoffice import open_office
from voice.ops.server import start_server

pytestmark = pytest.mark.models

PCM16 = AudioFormat("pcm16", 16000)
PASSWORD = "correct horse battery"
LONG_REPLY = "The light flashes red when the bulb lost its network. " * 6


class ShortFirst(ScriptedAgent):
    """Answers the first question in one short sentence; the others with `reply`."""

    async def answer(
        self, question: str, memory: Sequence[Exchange], *, heard_clearly: bool = True
    ) -> AsyncIterator[AnswerEvent]:
        if self.asked:
            async for event in super().answer(question, memory, heard_clearly=heard_clearly):
                yield event
            return
        self.asked.append((question, list(memory)))
        yield AnswerText("The bulb has a two-year warranty.")
        yield AnswerEnd(backend="scripted")


@pytest.fixture
async def recorded_server(models, tmp_path: Path) -> AsyncIterator[tuple[str, dict, Any]]:
    """(base URL, supervisor auth header, office) of a server that keeps records."""
    settings = dataclasses.replace(Settings(), server=ServerSettings(data_dir=tmp_path))
    office = open_office(settings)
    office.users.add("alice", PASSWORD)
    agent = ShortFirst(reply=LONG_REPLY)
    runner, port = await start_server(make_services(models, agent), "127.0.0.1", 0, office)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            login = {"name": "alice", "password": PASSWORD}
            async with http.post(f"{base}/api/login", json=login) as response:
                token = (await response.json())["token"]
        yield base, {"Authorization": f"Bearer {token}"}, office
    finally:
        await runner.cleanup()
        office.close()


async def watch(feed: aiohttp.ClientWebSocketResponse, seen: list[dict[str, Any]]) -> None:
    async for message in feed:
        seen.append(json.loads(message.data))


async def test_a_reply_cut_by_a_barge_in_and_a_hang_up_is_in_the_history(recorded_server, say):
    """Seen: a second turn, barged in on just before the caller hung up, was on the live
    console and missing from the call history. Closing the call cancelled the reply (and
    the barge-in stopping it) before its `reply.end`, from which the turn is recorded."""
    base, auth, office = recorded_server
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        feed = await http.ws_connect(base.replace("http", "ws") + "/api/live", headers=auth)
        watching = asyncio.create_task(watch(feed, seen))
        url = base.replace("http", "ws") + "/call"
        async with CallClient(url, PCM16) as call:
            first = await call.ask(say("How long is the warranty?"), realtime=False)
            assert first.reply and not first.interrupted
            await call.send_audio(say("Why is the light red?"), realtime=False)
            await call.send_silence(1500)
            await call.wait_for(lambda e: e["type"] == "reply.text" and e["turn"] == 2, timeout=30)
            while not call.turns[2].audio:  # noqa: ASYNC110 (audio comes with no event)
                await asyncio.sleep(0.02)  # until the reply plays
            await asyncio.sleep(1.0)  # and its first words are heard
            await call.send_audio(say("Wait, stop, that is not what I asked."), realtime=False)
            await call.wait_for(lambda e: e["type"] == "speech.started" and e["turn"] == 3)
            # The caller hangs up while the barge-in is being heard: `async with` ends here.
        for _ in range(500):
            if any(e["type"] == "call.ended" and e["call_id"] == call.call_id for e in seen):
                break
            await asyncio.sleep(0.02)
        await feed.close()
        await watching
    assert office.store.flush(10)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/api/calls/{call.call_id}", headers=auth) as response,
    ):
        record = await response.json()

    live = [e for e in seen if e.get("call_id") == call.call_id]
    assert live[-1]["type"] == "call.ended"
    shown = {
        e["turn"]
        for e in live
        if e["type"] == "reply.text" or (e["type"] == "transcript.final" and not e["ignored"])
    }
    stored = {turn["turn"]: turn for turn in record["turns"]}
    assert shown == {1, 2}
    assert set(stored) == shown, "a turn shown live is missing from the history"
    ends = {e["turn"]: e for e in live if e["type"] == "reply.end"}
    assert set(ends) == shown, "the live feed saw every turn end"
    for number, turn in stored.items():
        assert turn["reply"] == ends[number]["heard"]
        assert turn["barge_in"] == ends[number]["interrupted"]
    assert not stored[1]["barge_in"]
    cut = stored[2]
    assert cut["barge_in"] and not cut["handoff"]
    assert cut["question"] == next(
        e["text"] for e in live if e["type"] == "transcript.final" and e["turn"] == 2
    )
    assert cut["reply"], "the caller heard the start of the reply"
    assert LONG_REPLY.startswith(cut["reply"]) and len(cut["reply"]) < len(LONG_REPLY.strip())
