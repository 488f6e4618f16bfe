"""`POST /api/chat` on a real socket, with the extractive agent on the demo KB."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from agent.agent import KnowledgeAgent
from agent.types import AgentSettings
from tests.support.fakes import ScriptedAgent
from voice.channels.chat import ChatMemory


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


def test_chat_memory_forgets_idle_sessions_and_stays_bounded():
    memory = ChatMemory(max_sessions=2, idle_s=3600)
    for name in ("a", "b", "c"):
        memory.recall(name).append(name)  # type: ignore[arg-type]
    assert memory.recall("a") == []  # the oldest was dropped to stay within 2
    idle = ChatMemory(idle_s=0.0)
    idle.recall("a").append("x")  # type: ignore[arg-type]
    assert idle.recall("a") == []


async def test_the_knowledge_base_reloads_while_serving(models, tmp_path):
    from tests.support.servers import make_services
    from voice.ops.server import start_server

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
