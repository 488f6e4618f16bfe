"""The text API, `POST /api/chat`: the same agent and guardrails as a call, for typed questions."""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from typing import Any

from aiohttp import web

from agent.types import Agent, AnswerEnd, AnswerText, Exchange

MAX_MESSAGE_CHARS = 2000
MAX_SESSIONS = 10_000
SESSION_IDLE_S = 1800.0


class ChatMemory:
    """Earlier exchanges per chat session: at most MAX_SESSIONS, each forgotten after
    SESSION_IDLE_S without a message. One instance per server; not thread-safe."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, idle_s: float = SESSION_IDLE_S) -> None:
        self._sessions: OrderedDict[str, tuple[float, list[Exchange]]] = OrderedDict()
        self._max = max_sessions
        self._idle_s = idle_s

    def recall(self, session_id: str) -> list[Exchange]:
        """The session's exchanges (a list to append to), forgetting idle and excess sessions."""
        now = time.monotonic()
        seen, exchanges = self._sessions.pop(session_id, (now, []))
        if now - seen >= self._idle_s:
            exchanges = []
        while self._sessions and (
            len(self._sessions) >= self._max
            or now - next(iter(self._sessions.values()))[0] >= self._idle_s
        ):
            self._sessions.popitem(last=False)
        self._sessions[session_id] = (now, exchanges)
        return exchanges


class ChatError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_request(body: bytes) -> tuple[str, str | None]:
    """(message, session id) from the request body, or ChatError."""
    try:
        data = json.loads(body)
    except ValueError:
        raise ChatError("bad_json", "The request body must be JSON.") from None
    if not isinstance(data, dict):
        raise ChatError("bad_json", "The request body must be a JSON object.")
    message = data.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ChatError("missing_message", 'The request needs a non-empty "message" string.')
    if len(message) > MAX_MESSAGE_CHARS:
        raise ChatError(
            "message_too_long", f"A message is limited to {MAX_MESSAGE_CHARS} characters."
        )
    session_id = data.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or len(session_id) > 200):
        raise ChatError(
            "bad_session_id", '"session_id" must be a string of at most 200 characters.'
        )
    return message.strip(), session_id


async def answer(
    agent: Agent, memory: ChatMemory, message: str, session_id: str, memory_turns: int
) -> dict[str, Any]:
    exchanges = memory.recall(session_id)
    parts: list[str] = []
    end = AnswerEnd()
    async for event in agent.answer(message, exchanges[-memory_turns:] if memory_turns else []):
        if isinstance(event, AnswerText):
            parts.append(event.text)
        else:
            end = event
    reply = "".join(parts).strip()
    exchanges.append(Exchange(message, reply, end.rules, end.sources))
    if len(exchanges) > memory_turns:
        del exchanges[: len(exchanges) - memory_turns]
    return {
        "reply": reply,
        "sources": list(end.sources),
        "handoff": end.handoff,
        "rules": list(end.rules),
        "session_id": session_id,
    }


def error_response(error: ChatError, status: int = 400) -> web.Response:
    return web.json_response(
        {"error": {"code": error.code, "message": error.message}}, status=status
    )


def new_session_id() -> str:
    return uuid.uuid4().hex
