"""The seam between the agent and what writes the answer: extractive, or an LLM (Ollama).

The agent has already applied the question guardrails, the FAQ fast path and retrieval when it
calls a backend, and it applies the answer guardrails to whatever the backend yields. A backend
only turns confident passages into answer text.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from agent.kb import KnowledgeBase, Passage
from agent.retrieval import Search
from agent.types import AnswerEvent, Exchange


@dataclass(frozen=True)
class BackendRequest:
    """Everything a backend may use to answer one question."""

    question: str
    """The caller's question as transcribed (with the previous question prepended when the
    agent resolved a follow-up)."""
    search: Search
    """Retrieval's view of the question: its terms and all hits."""
    passages: tuple[Passage, ...]
    """The passages retrieval is confident about, best first; never empty."""
    kb: KnowledgeBase
    memory: tuple[Exchange, ...]
    """Earlier turns of this call, oldest first, at most `AgentSettings.memory_turns`."""


class AnswerBackend(Protocol):
    """Writes answers from passages. One instance serves every call at once."""

    name: str
    """Recorded as `AnswerEnd.backend`: "extractive", "ollama"."""

    def answer(self, request: BackendRequest) -> AsyncGenerator[AnswerEvent, None]:
        """Yield `AnswerText` pieces of any size, then exactly one `AnswerEnd`.

        Write it as an async generator: the agent closes it (`aclose`) on barge-in.

        The agent re-splits the pieces into sentences and checks each one, so a streaming LLM
        can yield tokens. An `AnswerText` with `filler=True` (an acknowledgement while the
        answer is being written) is passed on unchecked and does not count as the answer. In
        the `AnswerEnd`, set `sources` to the ids the answer rests on, `handoff=True` when
        the passages turned out not to answer the question (the agent then speaks the handoff
        message if nothing was said), and `rules` to anything the call's record should show
        (`llm_fallback`). Cancelling the iteration must be safe and leave nothing running.
        """
        ...
