"""`POST /api/chat` on a real socket, with the extractive agent on the demo KB."""

from __future__ import annotations

import aiohttp
import pytest

from agent.agent import KnowledgeAgent
from agent.types import AgentSettings
from tests.fakes import ScriptedAgent
from voice.chat import ChatMemory


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
