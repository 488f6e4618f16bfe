"""`POST /api/chat` on a real socket, with the extractive agent on the demo KB."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
import pytest

from agent.agent import KnowledgeAgent
from agent.types import AgentSettings
from tests.support.fakes import Clock, ScriptedAgent
from tests.support.servers import make_services
from voice.channels.chat import ChatSessions
from voice.config import ServerSettings, Settings
from voice.office.backoffice import open_office
from voice.ops.server import start_server


@pytest.fixture(scope="module")
async def chat_url(serve):
    agent = KnowledgeAgent.from_settings(AgentSettings(backend="extractive"))
    async with serve(agent) as url:
        yield url.replace("ws://", "http://").replace("/call", "/api/chat")


async def post(url, body):
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, (str, bytes)) else None
        kwargs = {"data": data} if data is not None else {"json": body}
        async with session.post(url, **kwargs) as response:
            return response.status, await response.json()


async def test_a_question_gets_a_grounded_reply(chat_url):
    status, body = await post(chat_url, {"message": "my bulb keeps flashing red"})
    assert status == 200
    assert "troubleshooting#4.2" in body["sources"]
    assert "2.4" in body["reply"]
    assert body["handoff"] is False
    assert body["session_id"]


async def test_out_of_scope_and_human_requests_are_handed_off(chat_url):
    _, weather = await post(chat_url, {"message": "what will the weather be tomorrow"})
    assert weather["handoff"] is True
    _, human = await post(chat_url, {"message": "I want to talk to a human"})
    assert human["handoff"] is True and human["rules"]


async def test_memory_is_kept_per_session(serve):
    agent = ScriptedAgent()
    async with serve(agent) as url:
        url = url.replace("ws://", "http://").replace("/call", "/api/chat")
        await post(url, {"message": "first", "session_id": "a"})
        await post(url, {"message": "other", "session_id": "b"})
        await post(url, {"message": "second", "session_id": "a"})
    memories = {question: [e.question for e in memory] for question, memory in agent.asked}
    assert memories == {"first": [], "other": [], "second": ["first"]}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", "bad_json"),
        ("[1]", "bad_json"),
        ({"session_id": "x"}, "missing_message"),
        ({"message": "  "}, "missing_message"),
        ({"message": "x" * 2001}, "message_too_long"),
        ({"message": "hi", "session_id": 5}, "bad_session_id"),
    ],
)
async def test_bad_requests_get_400_with_a_clear_error(chat_url, body, code):
    status, response = await post(chat_url, body)
    assert status == 400
    assert response["error"]["code"] == code
    assert response["error"]["message"].endswith(".")


def test_a_session_lasts_while_messages_come_and_ends_when_idle():
    clock = Clock()
    sessions = ChatSessions(idle_s=300, clock=clock)
    first, ended = sessions.take("a")
    assert ended == [] and first.call_id.startswith("text-")
    assert sessions.due_in() == 300
    clock.now += 299
    again, ended = sessions.take("a")
    assert again is first and ended == []
    assert sessions.due_in() == 300  # its last message counts
    clock.now += 299.5
    assert sessions.idle() == [] and sessions.due_in() == 0.5
    clock.now += 0.5
    assert sessions.idle() == [first] and sessions.due_in() == 300
    new, ended = sessions.take("a")
    assert new is not first and new.call_id != first.call_id and new.exchanges == []


def test_a_message_after_the_idle_time_ends_the_old_session_before_any_sweep():
    clock = Clock()
    sessions = ChatSessions(idle_s=300, clock=clock)
    old, _ = sessions.take("a")
    other, _ = sessions.take("b")
    clock.now += 300
    new, ended = sessions.take("a")
    assert ended == [old, other] and new.call_id != old.call_id


def test_beyond_the_most_sessions_the_longest_idle_ends():
    clock = Clock()
    sessions = ChatSessions(idle_s=300, max_sessions=2, clock=clock)
    a, _ = sessions.take("a")
    clock.now += 1
    sessions.take("b")
    clock.now += 1
    sessions.take("a")
    _, ended = sessions.take("c")
    assert [s.session_id for s in ended] == ["b"]
    assert [s.session_id for s in sessions.close()] == ["a", "c"]
    assert sessions.close() == []


def test_an_idle_time_of_nothing_is_refused():
    with pytest.raises(ValueError, match="more than 0"):
        ChatSessions(idle_s=0)


async def test_an_idle_session_ends_in_the_history_and_on_the_live_feed(models, tmp_path):
    """Text sessions never ended: the history showed every chat live forever."""
    settings = dataclasses.replace(Settings(), server=ServerSettings(data_dir=tmp_path))
    office = open_office(settings)
    agent = ScriptedAgent(reply="Use a 2.4 GHz network.")
    services = make_services(models, agent, call={"text_idle_timeout_s": 0.5})
    runner, port = await start_server(services, "127.0.0.1", 0, office)
    url = f"http://127.0.0.1:{port}/api/chat"
    feed = office.hub.subscribe()
    try:
        _, first = await post(url, {"message": "my bulb flashes red", "session_id": "k7"})
        _, second = await post(url, {"message": "and then?", "session_id": "k7"})
        call_id = first["call_id"]
        assert second["call_id"] == call_id
        seen = []
        async with asyncio.timeout(10):
            async for event in feed:
                seen.append(event)
                if event["type"] == "call.ended":
                    break
        _, later = await post(url, {"message": "hello again", "session_id": "k7"})
    finally:
        feed.close()
        await runner.cleanup()
    assert [(e["type"], e.get("turn")) for e in seen] == [
        ("call.started", None),
        ("transcript.final", 1),
        ("reply.end", 1),
        ("transcript.final", 2),
        ("reply.end", 2),
        ("call.ended", None),
    ]
    assert {e["call_id"] for e in seen} == {call_id}
    assert seen[0]["channel"] == "text" and seen[-1]["reason"] == "idle"
    assert seen[2]["text"] == "Use a 2.4 GHz network." and seen[2]["heard"] == seen[2]["text"]
    assert later["call_id"] != call_id, "a session over is not taken up again"
    assert [memory for _, memory in agent.asked][2] == []
    assert office.store.flush(10)
    detail = office.store.call(call_id)
    office.close()
    assert detail is not None and detail.call.channel == "text"
    assert detail.call.end_reason == "idle" and detail.call.ended_at is not None
    assert detail.call.ended_at - detail.call.started_at >= 0.5
    assert [(t.turn, t.question) for t in detail.turns] == [
        (1, "my bulb flashes red"),
        (2, "and then?"),
    ]
    assert (
        detail.turns[1].reply == "Use a 2.4 GHz network."
        and detail.turns[1].at >= detail.turns[0].at
    )


async def test_the_knowledge_base_reloads_while_serving(models, tmp_path):
    (tmp_path / "hours.md").write_text(
        "# Opening hours\n\n## 1 Store hours\n\nThe store opens at nine in the morning.\n"
    )
    agent = KnowledgeAgent.from_settings(AgentSettings(kb_dir=tmp_path, backend="extractive"))
    services = make_services(models, agent)
    services.background.append(agent.watch_kb)
    runner, port = await start_server(services, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/api/chat"
    try:
        _, before = await post(url, {"message": "when does the store open"})
        assert "nine" in before["reply"]
        (tmp_path / "hours.md").write_text(
            "# Opening hours\n\n## 1 Store hours\n\nThe store opens at ten in the morning.\n"
        )
        (tmp_path / "faq.yaml").write_text("- id: broken\n  questions: [oops\n")  # malformed
        for _ in range(20):  # two reload checks at least
            _, after = await post(url, {"message": "when does the store open"})
            if "ten" in after["reply"]:
                break
            await asyncio.sleep(0.2)
        assert "nine" in after["reply"]  # a malformed file keeps the previous KB in service
        (tmp_path / "faq.yaml").unlink()
        for _ in range(50):
            _, after = await post(url, {"message": "when does the store open"})
            if "ten" in after["reply"]:
                break
            await asyncio.sleep(0.2)
        assert "ten" in after["reply"]
    finally:
        await runner.cleanup()
