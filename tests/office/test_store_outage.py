"""The records' store fails while calls go on (a real SQLITE_FULL: the database may not grow):
callers are answered as usual, their records wait in the spool, and they are written once space
is freed. A real server on a loopback socket with a real SQLite file."""

from __future__ import annotations

import asyncio

from tests.support.fakes import ScriptedAgent
from tests.support.servers import make_services
from voice.channels.codecs import AudioFormat
from voice.clients.client import CallClient
from voice.office.backoffice import Office
from voice.office.records import CallRecord, TurnRecord
from voice.office.spool import SpooledStore
from voice.office.store import SqliteStore
from voice.ops.server import start_server

PCM16 = AudioFormat("pcm16", 16000)


class FullDisk(SqliteStore):
    """While `full`, no write may grow the database by a page (`PRAGMA max_page_count`): every
    new call, turn and ending fails with "database or disk is full", as on a full disk."""

    full = False

    def _limit(self) -> None:
        limit = 1 if self.full else 1 << 30  # sqlite raises a limit under the size to the size
        self.database.connection().execute(f"PRAGMA max_page_count = {limit}")

    def start_call(self, call: CallRecord) -> None:
        self._limit()
        super().start_call(call)

    def add_turn(self, turn: TurnRecord) -> None:
        self._limit()
        super().add_turn(turn)


async def test_calls_go_on_while_the_store_is_full_and_their_records_arrive_later(models, tmp_path):
    store = FullDisk(tmp_path / "voicedesk.db")
    spool = SpooledStore(store, retry_min_s=0.05, retry_max_s=0.2)
    office = Office(store=spool)
    agent = ScriptedAgent(reply="Your warranty lasts two years. " + "x" * 3000)
    runner, port = await start_server(make_services(models, agent), "127.0.0.1", 0, office)
    url = f"ws://127.0.0.1:{port}/call"
    try:
        store.full = True
        call_ids = []
        for _ in range(2):
            async with CallClient(url, PCM16, realtime_playback=False) as call:
                for number in (1, 2):
                    await call.send_text(f"question {number} about the warranty")
                    end = await call.wait_for(
                        lambda e, n=number: e["type"] == "reply.end" and e["turn"] == n,
                        timeout=30,
                    )
                    assert end["text"].startswith("Your warranty lasts two years.")
            call_ids.append(call.call_id)
        await asyncio.sleep(0.3)
        assert spool.failing and spool.pending >= 2  # writes wait; the calls did not
        kept = [await asyncio.to_thread(store.call, call_id) for call_id in call_ids]
        assert any(d is None or len(d.turns) < 2 or d.call.end_reason is None for d in kept)
        store.full = False  # space freed
        assert await asyncio.to_thread(spool.flush, 30)
        for call_id in call_ids:
            detail = await asyncio.to_thread(store.call, call_id)
            assert detail is not None and detail.call.end_reason == "hangup"
            assert [t.question for t in detail.turns] == [
                "question 1 about the warranty",
                "question 2 about the warranty",
            ]
        assert not spool.failing
    finally:
        await runner.cleanup()
        spool.close()
