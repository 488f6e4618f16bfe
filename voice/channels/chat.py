"""The text API, `POST /api/chat`: the same agent and guardrails as a call, for typed questions.

The messages with one `session_id` are a conversation, a session, until no message came for
`call.text_idle_timeout_s`; each session is kept as a call on the "text" channel. The sessions
live in the server (`InProcessChats`), or in Redis where every server of a deployment finds
them (`voice.channels.shared_chats`)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from agent.types import Agent, AnswerEnd, AnswerText, Exchange
from voice.channels import protocol

MAX_MESSAGE_CHARS = 2000
MAX_SESSIONS = 10_000


@dataclass
class ChatSession:
    """One conversation on the text API."""

    session_id: str
    """The caller's name for it."""
    call_id: str
    """The server's: what it is recorded under. New for every session, so a `session_id` used
    again after its session ended starts a new conversation and a new record."""
    last_at: float
    """When its latest message came (the sessions' clock, seconds)."""
    started_at: float = field(default_factory=time.time)
    """When it began (Unix seconds): its call's start."""
    turns: int = 0
    exchanges: list[Exchange] = field(default_factory=list)
    """Its latest exchanges, for the agent's memory."""

    def next_turn(self) -> int:
        self.turns += 1
        return self.turns


class ChatSessions:
    """The open sessions of a server. A session with no message for `idle_s` is over, and so
    is the longest idle one when `max_sessions` are open and another begins. One per server,
    used from its event loop; `clock` is in seconds (monotonic)."""

    def __init__(
        self,
        idle_s: float,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_s <= 0:
            raise ValueError(f"a session's idle time must be more than 0 s, not {idle_s:g}")
        self._open: OrderedDict[str, ChatSession] = OrderedDict()
        """By session id, the longest idle first."""
        self._idle_s = idle_s
        self._max = max_sessions
        self._clock = clock

    def take(self, session_id: str) -> tuple[ChatSession, list[ChatSession]]:
        """The open session `session_id` (a new one if there is none, or it went idle), with
        its message counted now; and the sessions that ended meanwhile, to be closed."""
        ended = self.idle()
        now = self._clock()
        session = self._open.pop(session_id, None)
        if session is None:
            while len(self._open) >= self._max:
                ended.append(self._open.popitem(last=False)[1])
            session = ChatSession(session_id, new_call_id(), now)
        session.last_at = now
        self._open[session_id] = session
        return session, ended

    def idle(self) -> list[ChatSession]:
        """The sessions idle for `idle_s`, now over."""
        now, ended = self._clock(), []
        while self._open and now - next(iter(self._open.values())).last_at >= self._idle_s:
            ended.append(self._open.popitem(last=False)[1])
        return ended

    def due_in(self) -> float:
        """Seconds until the next session goes idle; `idle_s` when none is open."""
        if not self._open:
            return self._idle_s
        oldest = next(iter(self._open.values()))
        return max(0.0, oldest.last_at + self._idle_s - self._clock())

    def open(self, session_id: str) -> ChatSession | None:
        """The open session `session_id`, if any (whether or not it has gone idle)."""
        return self._open.get(session_id)

    def close(self) -> list[ChatSession]:
        """Every open session, now over (the server stops)."""
        ended = list(self._open.values())
        self._open.clear()
        return ended


@dataclass(frozen=True)
class ChatTurn:
    """One message of a session, as its answer needs it."""

    session_id: str
    call_id: str
    started_at: float
    """When the session began (Unix seconds)."""
    turn: int
    """This message's number in the session, from 1."""
    exchanges: tuple[Exchange, ...]
    """The session's latest exchanges before this message, oldest first."""

    @property
    def first(self) -> bool:
        """It began the session (and its call)."""
        return self.turn == 1


EndSession = Callable[[str, str, float | None], None]
"""Ends a session's call in the records and on the live feed: (call id, reason, when it ended
in Unix seconds, None for now)."""


class Chats(Protocol):
    """Where a server keeps its text-chat sessions, each ended (the call of its record) with
    the `EndSession` it was given. Used from the server's event loop."""

    async def take(self, session_id: str) -> ChatTurn:
        """A message of `session_id` counted now, in its session (a new one when there is none
        or it went idle)."""
        ...

    async def remember(self, turn: ChatTurn, exchange: Exchange) -> None:
        """The exchange of `turn`, for the session's next messages."""
        ...

    async def end_idle(self) -> None:
        """End each session as it goes idle, until cancelled."""
        ...

    async def close(self) -> None:
        """The server stops: end what only it would end."""
        ...


class InProcessChats:
    """The sessions in this server's memory: one server, or sessions that stay on the server
    where they began."""

    def __init__(self, sessions: ChatSessions, memory_turns: int, end: EndSession) -> None:
        self._sessions = sessions
        self._memory = memory_turns
        self._end = end

    async def take(self, session_id: str) -> ChatTurn:
        session, ended = self._sessions.take(session_id)
        for over in ended:
            self._end(over.call_id, "idle", None)
        return ChatTurn(
            session.session_id,
            session.call_id,
            session.started_at,
            session.next_turn(),
            tuple(session.exchanges),
        )

    async def remember(self, turn: ChatTurn, exchange: Exchange) -> None:
        session = self._sessions.open(turn.session_id)
        if session is None or session.call_id != turn.call_id:
            return  # ended while it was answered
        session.exchanges.append(exchange)
        del session.exchanges[: max(0, len(session.exchanges) - self._memory)]

    async def end_idle(self) -> None:
        while True:
            await asyncio.sleep(self._sessions.due_in())
            for session in self._sessions.idle():
                self._end(session.call_id, "idle", None)

    async def close(self) -> None:
        for session in self._sessions.close():
            self._end(session.call_id, "server_shutdown", None)


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
    agent: Agent, turn: ChatTurn, message: str, memory_turns: int
) -> tuple[protocol.ReplyEnd, Exchange]:
    """The agent's reply to `message`, as a call's turn ends (the reply is all "heard": text is
    read whole, and `first_text` is timed from the message), and the exchange to remember."""
    asked_at = time.monotonic()
    memory = list(turn.exchanges[-memory_turns:]) if memory_turns else []
    parts: list[str] = []
    end = AnswerEnd()
    first_text_ms = None
    async for event in agent.answer(message, memory):
        if isinstance(event, AnswerText):
            if first_text_ms is None:
                first_text_ms = round((time.monotonic() - asked_at) * 1000)
            parts.append(event.text)
        else:
            end = event
    reply = "".join(parts).strip()
    ended = protocol.ReplyEnd(
        turn=turn.turn,
        text=reply,
        heard=reply,
        sources=list(end.sources),
        handoff=end.handoff,
        interrupted=False,
        rules=list(end.rules),
        timings_ms=protocol.Timings(first_text=first_text_ms),
        backend=end.backend,
    )
    return ended, Exchange(message, reply, end.rules, end.sources)


SESSIONS_DOWN = ChatError(
    "sessions_unavailable",
    "The server cannot reach its chat sessions right now; try again in a moment.",
)


def error_response(error: ChatError, status: int = 400) -> web.Response:
    return web.json_response(
        {"error": {"code": error.code, "message": error.message}}, status=status
    )


def new_session_id() -> str:
    return uuid.uuid4().hex


def new_call_id() -> str:
    """A text session's call id: `text-` and 12 hex digits, as long as a voice call's id."""
    return "text-" + uuid.uuid4().hex[:12]
