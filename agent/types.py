"""Plain types at the agent's boundary: what the voice loop and the text API exchange with it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

Backend = Literal["auto", "ollama", "extractive"]

DEFAULT_HANDOFF_MESSAGE = (
    "I don't have that information yet, so I'm transferring you to a colleague."
)


@dataclass(frozen=True)
class AgentSettings:
    """How the agent answers. Read once at start; shared by every call."""

    kb_dir: Path | None = None
    """Knowledge-base directory; None means the bundled demo KB."""
    backend: Backend = "auto"
    ollama_url: str = "http://127.0.0.1:11434"
    model: str = "phi3:mini"
    memory_turns: int = 3
    """How many earlier turns of the call the agent sees."""
    max_sentences: int = 3
    """Longest spoken answer, in sentences."""
    handoff_message: str = DEFAULT_HANDOFF_MESSAGE
    min_confidence: float = 0.5
    """0..1: a passage must contain at least this share of the question's terms (weighted by
    rarity) to be used; below it the question is out of scope and the call is handed off."""
    faq_min_confidence: float = 0.7
    """0..1: how closely the question must match an FAQ question (both ways) for the FAQ
    answer to be spoken as is."""
    max_steps: int = 4
    """Longest list of numbered steps read out; steps count apart from max_sentences."""
    cite_sources: bool = True
    """Start extractive answers with "According to our <manual>, section <n>, ..."."""

    # The Ollama backend. Timeouts bound what the caller hears: past each one the answer falls
    # back to the extractive one (nothing said yet) or ends with an apology and a handoff.
    keep_alive: str = "30m"
    """How long Ollama keeps the model loaded after an answer: a duration ("30m", "1h") or
    seconds ("-1": for ever)."""
    num_ctx: int = 2048
    """The model's context window, in tokens; passages are cut to fit it."""
    num_predict: int = 160
    """Longest LLM answer, in tokens; an unfinished last sentence is not spoken."""
    temperature: float = 0.1
    connect_timeout_s: float = 2.0
    """Opening the connection to Ollama; also the whole budget of a health check."""
    first_token_timeout_s: float = 8.0
    """From the question to the model's first text (a cold model loads in this time)."""
    stall_timeout_s: float = 4.0
    """Longest pause between two pieces of a streamed answer."""
    total_timeout_s: float = 20.0
    """Longest time one LLM answer may take, from the request to its last piece."""
    first_token_ack_s: float = 1.5
    """When the model has said nothing after this long, :attr:`ack_message` is spoken first."""
    ack_message: str = "Let me check that for you."
    health_retry_s: float = 10.0
    """With backend "ollama": how often an unreachable Ollama is checked again, while the
    extractive backend answers."""
    llm_failure_message: str = (
        "Sorry, I can't finish that answer right now, so I'm transferring you to a colleague."
    )
    """Spoken when the LLM fails after part of its answer was spoken; the call is handed off."""


@dataclass(frozen=True)
class Exchange:
    """One earlier turn of the call: the question and the answer as the caller heard it."""

    question: str
    answer: str


@dataclass(frozen=True)
class AnswerText:
    """The next piece of the answer's text, in order; pieces concatenate to the answer.

    A piece that ends with a sentence end (". ", "! ", "? ") closes that sentence: the voice loop
    speaks it at once rather than waiting for the next piece to tell "Dr." from a full stop.
    """

    text: str
    filler: bool = False
    """True for an acknowledgement spoken while the answer is still being written ("Let me
    check that for you."): it comes first, and it is not part of the answer."""


@dataclass(frozen=True)
class AnswerEnd:
    """The answer is complete. Always the last event of an answer."""

    sources: tuple[str, ...] = ()
    """Ids of the passages / FAQ entries the answer rests on, best first."""
    handoff: bool = False
    """True when the call should go to a human."""
    rules: tuple[str, ...] = field(default=())
    """Names of the guardrail rules that fired on this turn, and ``llm_fallback`` when the
    LLM failed and the extractive backend (or an apology and a handoff) answered instead."""
    backend: str = "extractive"
    """What produced the text: "faq", "extractive", "ollama" or "guardrail"."""


AnswerEvent = AnswerText | AnswerEnd


class Agent(Protocol):
    """Answers one question. One instance serves every call at once; it keeps no per-call state."""

    def answer(self, question: str, memory: Sequence[Exchange]) -> AsyncIterator[AnswerEvent]:
        """Stream the answer: AnswerText pieces, then exactly one AnswerEnd.

        Cancelling the iteration (barge-in) is safe and leaves nothing running.
        """
        ...

    def vocabulary(self) -> str:
        """The knowledge base's own words (product names, terms), to bias speech recognition."""
        ...
