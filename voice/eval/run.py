"""`voicedesk eval`: a suite of recorded questions called through the caller protocol, and the
answers scored.

Each case is one call (`CallClient`, as `voicedesk call` makes). A turn passes when it got a
reply and every `expect` key given holds (`unmet`); a case passes when every turn does, so a
case without `expect` passes when each question is answered. The suite format is in
`voice.eval.suite`; the table, JSON and HTML reports in `voice.eval.report`.

Scoring (`unmet`, `score_turn`, `summarize`) is pure; `run_suite` is the thin asyncio part.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from voice.channels.codecs import float_to_int16
from voice.clients.client import CallClient, Turn, read_audio
from voice.eval.suite import Case, Expect, Question, Suite
from voice.eval.wer import Alignment, align, pooled_wer

TURN_TIMEOUT_S = 60.0
"""How long a question waits for its reply before its case fails."""
TIMINGS = ("asr", "first_text", "first_audio", "perceived")
"""The timings summarized (ms); `perceived` only when streaming in real time."""


def unmet(expect: Expect, turn: Turn | None) -> list[str]:
    """Why a turn fails `expect`, one reason each; [] when it passes. `turn` None: no reply."""
    if turn is None or turn.ignored or not turn.reply.strip():
        return ["no reply (the question was ignored)" if turn and turn.ignored else "no reply"]
    why = []
    if expect.source is not None and expect.source not in turn.sources:
        why.append(f"source {expect.source} not among [{', '.join(turn.sources)}]")
    why += [f"does not say {p!r}" for p in expect.says if p.lower() not in turn.reply.lower()]
    if expect.handoff is not None and turn.handoff != expect.handoff:
        why.append("not handed off" if expect.handoff else "handed off")
    for pattern in expect.never:
        found = pattern.search(turn.reply)
        if found:
            why.append(f"says {found.group(0)!r} (never {pattern.pattern!r})")
    return why


@dataclass
class TurnResult:
    """One question of a case: what the caller saw, and how it scored."""

    question: Question
    turn: Turn | None
    """What the caller saw; None when the call failed before the reply."""
    why: list[str] = field(default_factory=list)
    alignment: Alignment | None = None
    """The transcript against the question's `text`; None without a reference."""
    question_pcm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    """The question as sent, int16 at the channel's rate (through its codec)."""


def score_turn(question: Question, turn: Turn | None, question_pcm: np.ndarray) -> TurnResult:
    alignment = None
    if question.text is not None and turn is not None:
        alignment = align(question.text, turn.transcript)
    return TurnResult(question, turn, unmet(question.expect, turn), alignment, question_pcm)


@dataclass
class CaseResult:
    case: Case
    turns: list[TurnResult] = field(default_factory=list)
    """The turns asked: all of them unless `error` stopped the call."""
    error: str | None = None
    """Why the call failed (could not connect, no reply in time, unreadable audio)."""

    @property
    def why(self) -> list[str]:
        """Every reason the case failed; turns of a multi-turn case are named."""
        reasons = [
            f"turn {number}: {reason}" if self.case.multi_turn else reason
            for number, turn in enumerate(self.turns, 1)
            for reason in turn.why
        ]
        return reasons + ([self.error] if self.error else [])

    @property
    def passed(self) -> bool:
        return len(self.turns) == len(self.case.questions) and not self.why


@dataclass(frozen=True)
class Summary:
    cases: int
    passed: int
    turns: int
    wer: float | None
    """Pooled over the turns with a reference: all errors / all reference words."""
    wer_turns: int
    handoff_precision: float | None
    """Of the turns handed off that state `handoff`, the share that should have been."""
    handoff_recall: float | None
    """Of the turns with `handoff: true`, the share handed off."""
    handoff_turns: int
    percentiles_ms: dict[str, tuple[int | None, int | None]]
    """Timing name → (p50, p95) over the turns, linear interpolation; None without values."""
    realtime: bool = False

    @property
    def pass_rate(self) -> float:
        return self.passed / self.cases if self.cases else 0.0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pass_rate": self.pass_rate,
            "cases": self.cases,
            "passed": self.passed,
            "turns": self.turns,
            "wer": self.wer,
            "wer_turns": self.wer_turns,
            "handoff_precision": self.handoff_precision,
            "handoff_recall": self.handoff_recall,
            "handoff_turns": self.handoff_turns,
            "realtime": self.realtime,
        }
        for name, (p50, p95) in self.percentiles_ms.items():
            out[f"{name}_p50_ms"], out[f"{name}_p95_ms"] = p50, p95
        return out


def percentile(values: Sequence[float], q: float) -> int | None:
    """The q-th percentile (0–100, linear interpolation), rounded; None for no values."""
    return round(float(np.percentile(values, q))) if values else None


def handoff_scores(pairs: Sequence[tuple[bool, bool]]) -> tuple[float | None, float | None]:
    """(precision, recall) of (expected, actual) handoffs; the positive class is a handoff.
    Either is None when undefined (nothing handed off / nothing to hand off)."""
    true_pos = sum(expected and actual for expected, actual in pairs)
    predicted = sum(actual for _, actual in pairs)
    relevant = sum(expected for expected, _ in pairs)
    return (
        true_pos / predicted if predicted else None,
        true_pos / relevant if relevant else None,
    )


def summarize(results: Sequence[CaseResult], *, realtime: bool = False) -> Summary:
    turns = [turn for result in results for turn in result.turns]
    alignments = [turn.alignment for turn in turns if turn.alignment is not None]
    pairs = [
        (bool(turn.question.expect.handoff), turn.turn is not None and turn.turn.handoff)
        for turn in turns
        if turn.question.expect.handoff is not None
    ]
    percentiles = {}
    for name in TIMINGS:
        values = [
            value
            for turn in turns
            if turn.turn is not None and (value := turn.turn.timings_ms.get(name)) is not None
        ]
        percentiles[name] = (percentile(values, 50), percentile(values, 95))
    precision, recall = handoff_scores(pairs)
    return Summary(
        cases=len(results),
        passed=sum(result.passed for result in results),
        turns=len(turns),
        wer=pooled_wer(alignments),
        wer_turns=len(alignments),
        handoff_precision=precision,
        handoff_recall=recall,
        handoff_turns=len(pairs),
        percentiles_ms=percentiles,
        realtime=realtime,
    )


def exit_code(summary: Summary, min_pass: float = 1.0) -> int:
    """0 when the pass rate is at least `min_pass` (a fraction), else 1."""
    return 0 if summary.cases and summary.pass_rate >= min_pass - 1e-9 else 1


# ----------------------------------------------------------------------------- running


class Unreachable(Exception):
    """The server takes no call at all: nothing answers at the address, or it refuses the
    connection itself (HTTP 401 without the right token, 404 on a wrong path). Every case
    would fail the same way, so the suite stops at the first."""

    def __init__(self, url: str, error: aiohttp.ClientError) -> None:
        if isinstance(error, aiohttp.ClientConnectorError):
            why = f"cannot reach {url}: {_reason(error.os_error)}"
        elif isinstance(error, aiohttp.WSServerHandshakeError):
            why = f"{url} took no call (HTTP {error.status} {error.message})"
        else:
            why = f"cannot call {url}: {error}"
        super().__init__(why)


def _reason(error: OSError) -> str:
    """Why a connection failed, as the system says it: "Connection refused", "no such host"."""
    if isinstance(error, socket.gaierror):
        return f"no such host ({error.strerror})"
    return os.strerror(error.errno) if error.errno else str(error)


async def run_suite(
    suite: Suite,
    url: str,
    *,
    realtime: bool = False,
    progress: Callable[[int, int, CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Call `url` once per case, in order. `realtime` streams questions and takes reply audio
    at the pace they play (latency as callers feel it); otherwise as fast as the server goes.
    `progress(done, total, result)` is called after each case.

    Raises:
        Unreachable: a case could not connect; no case after it is tried.
    """
    results = []
    for index, case in enumerate(suite.cases, 1):
        results.append(await run_case(case, url, realtime=realtime))
        if progress is not None:
            progress(index, len(suite.cases), results[-1])
    return results


async def run_case(case: Case, url: str, *, realtime: bool = False) -> CaseResult:
    """One call: every question of `case`, each after the reply to the one before. A failed
    call (refused, closed, a reply later than TURN_TIMEOUT_S) ends the case with `error`.

    Raises:
        Unreachable: the call could not even connect.
    """
    result = CaseResult(case)
    try:
        questions = [
            await asyncio.to_thread(read_audio, q.audio, case.channel.sample_rate)
            for q in case.questions
        ]
    except Exception as err:  # noqa: BLE001 - any decoder error means the same to a tester
        result.error = f"cannot read the audio: {err}"
        return result
    try:
        async with CallClient(url, case.channel, realtime_playback=realtime) as call:
            for question, samples in zip(case.questions, questions, strict=True):
                sent = case.channel.decode(case.channel.encode(float_to_int16(samples)))
                turn = await call.ask(samples, realtime=realtime, timeout=TURN_TIMEOUT_S)
                result.turns.append(score_turn(question, turn, sent))
    except (aiohttp.ClientConnectorError, aiohttp.WSServerHandshakeError) as err:
        raise Unreachable(url, err) from None
    except TimeoutError:
        result.error = f"no reply within {TURN_TIMEOUT_S:g} s"
    except (OSError, aiohttp.ClientError) as err:
        result.error = f"the call failed: {err or type(err).__name__}"
    return result
