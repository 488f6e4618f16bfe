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
    embedding_model: str = "minilm-l6-int8"
    """The sentence-embedding model that ranks passages by meaning: "minilm-l6-int8" or
    "paraphrase-minilm-l3" (both ship in their PyPI wheels); "" ranks by words alone (BM25),
    with the `min_confidence` thresholds below instead of the similarity ones."""
    embedding_cache_dir: Path | None = None
    """Where KB embeddings are kept between runs, by content; None: not kept (the server
    uses `<server.data_dir>/cache`)."""
    answer_similarity: float = 0.38
    """0..1: the question's similarity to the best sentence or step of a passage (or FAQ
    question) at which it is answered. One value for every KB: calibrated on several
    (docs/benchmarks.md)."""
    unsure_similarity: float = 0.37
    """0..1: from here up to `answer_similarity` the question is neither answered nor handed
    off: the caller is asked once to say it another way. Below it: out of scope, handed off."""
    faq_similarity: float = 0.8
    """0..1: how close the question must be to an FAQ question for its answer to be spoken as
    written."""
    choice_margin: float = 0.02
    """When the two best passages are this close (and both answer) on a vague question (few
    topic words, a match just over the answer line: `agent.agent.VAGUE_*`), the caller is
    asked which one they mean, with the passages' headings. Only with embeddings."""
    min_confidence: float = 0.5
    """Without embeddings: a passage must contain at least this share of the question's terms
    (weighted by rarity) to be used; below it the question is out of scope."""
    faq_min_confidence: float = 0.7
    """Without embeddings: how closely the question must match an FAQ question (both ways)
    for the FAQ answer to be spoken as is."""
    max_steps: int = 4
    """Longest list of numbered steps read out; steps count apart from max_sentences."""
    cite_sources: bool = False
    """Start extractive answers with "According to section <n> of <title>, ..." (the record
    names the sources either way; on the phone the citation delays the answer by seconds)."""
    price_note: str = "The current price is always on our website."
    """Said after an answer that states a price from the KB."""
    price_message: str = (
        "I don't have a price for that here. The current price is always on our website."
    )
    """Said to a question about a price the KB does not give."""
    rephrase_message: str = "Sorry, I'm not sure I understood. Could you say that another way?"
    """Asked once when the question was not heard clearly or matches the KB only loosely; a
    second miss is handed off."""
    choice_message: str = "Just to be sure: is it about {first}, or {second}?"
    """Asked when two passages answer about equally well; `{first}` and `{second}` are
    their headings."""

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
    """Opening the connection to Ollama; also the whole budget of a health check. An answer
    never waits longer than `first_token_timeout_s` for it: a host that drops packets falls
    back at whichever comes first."""
    first_token_timeout_s: float = 2.0
    """From the question (the transcript ready) to the model's first text; past it the
    extractive answer is spoken. 2 s keeps a hung Ollama inside a 3 s budget from the detected
    end of speech (recognition ~0.3 s, the first spoken clause ~0.3 s; measured by
    `bench/ollama_faults.py`). The price: a model
    slower than that to start always falls back. On a CPU-only box phi3:mini's first token
    often takes longer (prompt evaluation of the passages, and a cold model loads for seconds):
    raise it there (8 s and more), and a hung Ollama then leaves that long between
    `ack_message` and the answer."""
    stall_timeout_s: float = 4.0
    """Longest pause between two pieces of a streamed answer."""
    total_timeout_s: float = 20.0
    """Longest time one LLM answer may take, from the request to its last piece."""
    first_token_ack_s: float = 0.8
    """When the model has said nothing after this long, `ack_message` is spoken first;
    only before `first_token_timeout_s` (at or past it: never). The acknowledgement plays to
    its end before the answer: the default one is 1.3 s of speech, so starting it 1.2 s before
    the timeout ends it just as a fallback is ready, and it delays the fallback by nothing.
    Raise it with `first_token_timeout_s`, or shorten `ack_message`."""
    ack_message: str = "Let me check that for you."
    breaker_failures: int = 3
    """After this many Ollama failures in a row (any that made an answer fall back), questions
    skip the model for `breaker_open_s` and are answered by the extractive backend at once
    (`llm_fallback` and `llm_skipped` recorded). 0: never skip."""
    breaker_open_s: float = 30.0
    """How long the model is skipped; then the next question tries it again: a success
    closes the breaker, a failure skips it for this long again."""
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
    rules: tuple[str, ...] = ()
    """The rules of the answer (`AnswerEnd.rules`): a `clarify` or `not_understood`
    turn makes the next one a second try."""
    sources: tuple[str, ...] = ()
    """The answer's sources; for a `clarify` choice, the passages offered."""


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
    """Names of the guardrail rules that fired on this turn, and `llm_fallback` when the
    LLM failed and the extractive backend (or an apology and a handoff) answered instead,
    with `llm_skipped` too when the LLM was not called because it kept failing."""
    backend: str = "extractive"
    """What produced the text: "faq", "extractive", "ollama", "guardrail" or "clarify"."""


AnswerEvent = AnswerText | AnswerEnd


async def gather(events: AsyncIterator[AnswerEvent]) -> tuple[str, AnswerEnd]:
    """A whole answer: its text (acknowledgements left out) and its end, for callers that do
    not stream (the text API, `voicedesk ask`, evaluations)."""
    parts: list[str] = []
    end = AnswerEnd()
    async for event in events:
        if isinstance(event, AnswerEnd):
            end = event
        elif not event.filler:
            parts.append(event.text)
    return "".join(parts).strip(), end


class Agent(Protocol):
    """Answers one question. One instance serves every call at once; it keeps no per-call state."""

    def answer(
        self, question: str, memory: Sequence[Exchange], *, heard_clearly: bool = True
    ) -> AsyncIterator[AnswerEvent]:
        """Stream the answer: AnswerText pieces, then exactly one AnswerEnd.

        `heard_clearly` False: speech recognition doubts its transcript, so a question that
        finds nothing is asked again rather than handed off. Cancelling the iteration
        (barge-in) is safe and leaves nothing running.
        """
        ...

    def vocabulary(self) -> str:
        """The knowledge base's own words (product names, terms), to bias speech recognition."""
        ...
