"""Turn-taking (issue 15): how long a caller waits for the reply, and whether a question said in
two sentences with a pause between them is answered once.

    python bench/turn_taking.py [--rounds 1] [--voices piper,espeak,flite]
        [--paths twilio,call,sip] [--questions 10] [--requests 24] [--set turns.silence_ms=500]
        [--json out.json]

The server runs in-process on a loopback socket with the embedded defaults (the extractive
backend, no Ollama; `--set section.name=value` overrides a setting as `VOICEDESK_...` would).
Every question is its own call, spoken in real time through `/twilio` (a simulated carrier:
band-passed 8 kHz μ-law, Twilio Media Streams, tests/support/carrier.py), `/call` (16 kHz
PCM, `CallClient`) or SIP (the same 8 kHz audio as G.711 μ-law RTP from a bare SIP phone,
tests/support/sip_caller.py, to the server's SIP user agent), by the bundled Piper voice,
espeak-ng and flite (eval/make_audio.py's voices). The server's live feed (the supervisors'
console's) says what it heard and answered.

- **Latency**: ordinary caller questions of the utility, card line, transit, waste and airline
  suites (eval/*/clean.yaml), each served from its suite's KB. *Perceived*: the caller's last
  voiced sample sent → the first reply audio received; *first audio*: end of speech detected →
  first reply audio sent (`reply.end` `timings_ms.first_audio`); *answered ahead*: the reply
  had been begun in the pause before the turn ended (`reply.end` `ahead`); *from the cache*:
  the reply's first clause had been said before and was not synthesized again
  (`tts.cache.SpeechCache`: every voice asks the same questions, so the second and third often
  hear the same first clause; "clause made" is first audio without those;
  `--set tts.cache_mb=0` keeps none). The caller hangs up once the reply is heard to begin.
- **Split questions**: two-sentence requests (`SPLIT_REQUESTS`) with a pause of 0.4–0.9 s
  between the sentences' speech (spread over that range), each spoken by the next voice in
  turn. *One turn*: exactly one reply that was not stopped as a continuation, to a question
  holding words of both sentences; *split*: two replies or more (the first half answered
  alone, whether or not the second half cut it); *other*: neither (no reply, or one to half the
  request). The caller listens for `SETTLE_S` after the reply to its last words begins, then
  hangs up.

One call on each path warms the models up first and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.selection import build_agent  # noqa: E402
from bench.latency import machine, percentile  # noqa: E402
from eval.make_audio import PEAK, PIPER, RATE, Speaker, check_voices, telephone  # noqa: E402
from tests.support.carrier import SimulatedCarrier  # noqa: E402
from tests.support.feed import Feed  # noqa: E402
from tests.support.sip_caller import SipCaller  # noqa: E402
from text.words import plain_words  # noqa: E402
from voice.channels.codecs import AudioFormat  # noqa: E402
from voice.channels.pbx import sip_port  # noqa: E402
from voice.clients.client import CallClient  # noqa: E402
from voice.config import ENV_PREFIX, Settings, load_settings  # noqa: E402
from voice.eval.suite import load_suite  # noqa: E402
from voice.office.backoffice import Office  # noqa: E402
from voice.ops.server import start_server  # noqa: E402
from voice.ops.services import Services, load_services  # noqa: E402

VOICES = {"piper": PIPER, "espeak": "espeak-ng:en-us+m3", "flite": "flite:slt"}
"""`--voices` names → eval/make_audio.py's voices (a full `engine:NAME` is taken as it is)."""
PATHS = ("twilio", "call", "sip")
TRADES = ("utility", "cardline", "transit", "waste", "airline")
"""The eval suites the latency questions come from, taken in turn."""
NOT_ORDINARY = ("out-", "price-", "inject-", "human-", "followup-")
"""Case ids that are not an ordinary question the KB answers (eval/*/questions.yaml)."""
PAUSES_S = (0.4, 0.9)
"""The pause between the two sentences of a split request: spread over this range
(`pause_of`)."""
REPLY_TIMEOUT_S = 12.0
"""How long after the caller's last word the reply may take to begin before the call is
given up on (counted as no reply)."""
SETTLE_S = 1.5
"""How long a split request's caller listens on after the reply to its last words began, for
a second reply or a continuation to show."""
ENDED_TIMEOUT_S = 10.0
"""How long after hanging up the server may take to say the call ended."""

SPLIT_REQUESTS: tuple[tuple[str, str, str], ...] = (
    ("cardline", "I need a new card.", "How long will it take to arrive?"),
    ("cardline", "I'm going to Spain next week.", "Do I need to tell you before I use my card?"),
    ("cardline", "There's a payment on my statement I don't recognise.", "What should I do?"),
    ("cardline", "I'd like to add my daughter to the account.", "What do you need from her?"),
    ("utility", "My bill is much higher than usual this month.", "Can someone check the meter?"),
    ("utility", "The power has been out on my street since this morning.", "When will it be back?"),
    (
        "utility",
        "I'm moving to a new apartment at the end of the month.",
        "How do I move my service?",
    ),
    ("utility", "Can I pay my bill over the phone?", "Is there a fee for that?"),
    ("utility", "I put solar panels on my roof last year.", "Can I sell the extra power to you?"),
    ("transit", "I want to bring my bike on the train.", "Do I need a separate ticket for it?"),
    ("transit", "My train was an hour late yesterday.", "Can I get some money back?"),
    ("transit", "I lost my monthly pass on the bus.", "Can I get a replacement?"),
    (
        "transit",
        "I'm starting at the university in October.",
        "Is there a cheaper pass for students?",
    ),
    ("waste", "My bin wasn't emptied this week.", "Can you send someone back for it?"),
    ("waste", "I've got an old sofa to get rid of.", "Do you collect big items like that?"),
    ("waste", "We just moved into a new house on Oakfield Road.", "Which day do the bins go out?"),
    ("waste", "I have some leftover paint in the garage.", "Where can I take it?"),
    ("airline", "My suitcase didn't arrive with my flight.", "What do I do now?"),
    ("airline", "I booked a flight for next Friday.", "Can I change it to Saturday?"),
    ("airline", "I'm travelling with my guitar.", "Can I take it in the cabin with me?"),
    ("airline", "My flight was cancelled this morning.", "Am I entitled to a refund?"),
    ("airline", "Can I pick my seat when I book?", "Does it cost extra?"),
    ("demo", "My smart bulb keeps flashing red.", "How do I fix it?"),
    ("demo", "I ordered a door lock last week.", "When will it ship?"),
)
"""(KB, first sentence, second sentence): one request said in two sentences, as callers do.
"demo" is the bundled demo KB; the others are eval/<trade>/kb."""

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Spoken:
    """One thing a caller says in one call, ready for both paths."""

    kind: str
    """"latency" or "split"."""
    kb: str
    text: str
    voice: str
    audio: np.ndarray
    """Float32 at `RATE` (16 kHz), with a little silence before and after."""
    pause_s: float | None = None
    """Split requests: the silence between the two sentences."""
    halves: tuple[str, str] | None = None
    """Split requests: the two sentences."""


@dataclass
class Heard:
    """What one call showed: the feed's events for it and the caller's own clock."""

    events: Rows
    last_voiced_at: float
    arrivals: list[float]
    """When each piece of reply audio reached the caller (monotonic)."""


class PhoneCaller(SimulatedCarrier):
    """The simulated carrier, noting when each piece of reply audio arrived."""

    def __init__(self, url: str, caller_id: str) -> None:
        super().__init__(url, parameters={"caller_id": caller_id})
        self.arrivals: list[float] = []

    async def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("event") == "media":
            self.arrivals.append(time.monotonic())
        await super()._on_message(message)


class AppCaller(CallClient):
    """A caller over `/call` at 16 kHz that plays replies in real time, noting when each piece
    of reply audio arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(url, AudioFormat("pcm16", RATE), realtime_playback=True)
        self.arrivals: list[float] = []

    def _on_audio(self, data: bytes) -> None:
        self.arrivals.append(time.monotonic())
        super()._on_audio(data)


# ----------------------------------------------------------------------------- what is said


def latency_questions(count: int) -> list[tuple[str, str]]:
    """(trade, question) of `count` ordinary questions, the trades' suites taken in turn."""
    ordinary: dict[str, list[str]] = {}
    for trade in TRADES:
        suite = load_suite(ROOT / "eval" / trade / "clean.yaml")
        ordinary[trade] = [
            case.questions[0].text or ""
            for case in suite.cases
            if not case.multi_turn
            and not case.id.startswith(NOT_ORDINARY)
            and case.questions[0].expect.source is not None
        ]
    chosen = []
    for index in range(count):
        trade = TRADES[index % len(TRADES)]
        chosen.append((trade, ordinary[trade][index // len(TRADES)]))
    return chosen


def speech_only(audio: np.ndarray) -> np.ndarray:
    """The speech without the silence around it (40 dB below the peak, as eval/make_audio.py
    trims)."""
    loud = np.flatnonzero(np.abs(audio) > PEAK / 100)
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio


GOLDEN = (5**0.5 - 1) / 2


def pause_of(index: int) -> float:
    """The pause of request `index`: spread over `PAUSES_S` by the golden ratio's multiples
    (a low-discrepancy sequence), so that any run of requests, and every voice's share of them
    (each third, with three voices), has short and long pauses alike."""
    low, high = PAUSES_S
    return round(low + (high - low) * (index * GOLDEN % 1), 3)


def prepare(
    voices: list[str], questions: int, requests: int, rounds: int
) -> tuple[list[Spoken], list[Spoken]]:
    speaker = Speaker()
    lead = np.zeros(int(RATE * 0.3), np.float32)
    trail = np.zeros(int(RATE * 0.4), np.float32)
    try:
        asked = [
            Spoken("latency", kb, text, voice, speaker.say(text, voice, 1.0))
            for kb, text in latency_questions(questions)
            for voice in voices
        ]
        split = []
        chosen = SPLIT_REQUESTS[:requests]
        for turn in range(rounds):
            for index, (kb, first, second) in enumerate(chosen):
                voice = voices[(index + turn) % len(voices)]
                pause = pause_of(index)
                parts = [speech_only(speaker.say(text, voice, 1.0)) for text in (first, second)]
                gap = np.zeros(round(RATE * pause), np.float32)
                audio = np.concatenate([lead, parts[0], gap, parts[1], trail])
                split.append(
                    Spoken("split", kb, f"{first} {second}", voice, audio, pause, (first, second))
                )
    finally:
        speaker.close()
    return asked * rounds, split


# ----------------------------------------------------------------------------- the calls


@dataclass
class Server:
    url: str
    feed: Feed
    sip_port: int | None


@contextlib.asynccontextmanager
async def serving(services: Services, settings: Settings, kb: str) -> AsyncIterator[Server]:
    """The server answering from `kb` ("demo" or a trade's eval KB), with its live feed."""
    kb_dir = None if kb == "demo" else ROOT / "eval" / kb / "kb"
    agent, _ = build_agent(dataclasses.replace(settings.answering(), kb_dir=kb_dir))
    office = Office()
    feed = Feed(office.hub)
    collecting = asyncio.create_task(feed.collect())
    kb_services = dataclasses.replace(services, agent=agent, hotwords=agent.vocabulary())
    runner, port = await start_server(kb_services, "127.0.0.1", 0, office)
    sip = sip_port(runner.app) if settings.sip.listen else None
    try:
        yield Server(f"ws://127.0.0.1:{port}", feed, sip)
    finally:
        await runner.cleanup()
        office.close()
        await asyncio.gather(collecting, return_exceptions=True)


async def place_call(server: Server, path: str, spoken: Spoken, number: int) -> Heard:
    """Say `spoken` in a call of its own; hang up once the reply to its last words has begun
    (and, for a split request, `SETTLE_S` later)."""
    caller_id = f"+1555{number:07d}"
    caller: PhoneCaller | AppCaller | SipCaller
    if path == "twilio":
        caller = PhoneCaller(f"{server.url}/twilio", caller_id)
        audio = telephone(spoken.audio, RATE)[0]
    elif path == "sip":
        assert server.sip_port is not None
        caller = SipCaller("127.0.0.1", server.sip_port, caller_id)
        audio = telephone(spoken.audio, RATE)[0]
    else:
        caller, audio = AppCaller(f"{server.url}/call"), spoken.audio
    feed = server.feed
    async with caller:
        if isinstance(caller, PhoneCaller | SipCaller):
            last_voiced_at = await caller.say(audio)
            call_id = feed.call_id(caller_id)
        else:
            last_voiced_at = await caller.speak(audio)
            call_id = caller.call_id
        deadline = last_voiced_at + REPLY_TIMEOUT_S
        # Polled: the reply's audio reaches the caller, not the feed; its arrival is stamped.
        while time.monotonic() < deadline:
            if reply_begun_at(feed.of(call_id), last_voiced_at, arrivals(caller)) is not None:
                if spoken.kind == "split":
                    await asyncio.sleep(SETTLE_S)
                break
            await asyncio.sleep(0.02)
    with contextlib.suppress(TimeoutError):
        await feed.wait_until(lambda: bool(feed.of(call_id, "call.ended")), ENDED_TIMEOUT_S)
    return Heard(feed.of(call_id), last_voiced_at, list(arrivals(caller)))


def arrivals(caller: PhoneCaller | AppCaller | SipCaller) -> list[float]:
    """When each piece of reply audio reached `caller` (on SIP: each packet holding sound; the
    line carries silence in between)."""
    return caller.received.arrivals if isinstance(caller, SipCaller) else caller.arrivals


def reply_begun_at(events: Rows, last_voiced_at: float, arrivals: list[float]) -> float | None:
    """When the reply to the caller's last words began to arrive: the first reply audio after
    the last question heard (a transcript seen after the last voiced sample) and after any
    `clear`; None while there is none."""
    finals = [
        e
        for e in events
        if e["type"] == "transcript.final" and not e["ignored"] and e["seen_at"] > last_voiced_at
    ]
    if not finals:
        return None
    since = max([finals[-1]["seen_at"], *(e["seen_at"] for e in events if e["type"] == "clear")])
    return next((at for at in arrivals if at > since), None)


# ----------------------------------------------------------------------------- what happened


def distinct_words(text: str, other: str) -> set[str]:
    """The words of `text` of three letters or more that `other` does not have."""
    return {w for w in plain_words(text) if len(w) >= 3} - set(plain_words(other))


def holds(transcript: str, sentence: str, other: str) -> bool:
    """Whether `transcript` holds at least a third of `sentence`'s own words (one at least)."""
    own = distinct_words(sentence, other)
    found = own & set(plain_words(transcript))
    return len(found) >= max(1, math.ceil(len(own) / 3))


def row_of(spoken: Spoken, path: str, heard: Heard) -> dict[str, Any]:
    events = heard.events
    finals = [e for e in events if e["type"] == "transcript.final" and not e["ignored"]]
    ends = [e for e in events if e["type"] == "reply.end"]
    answered = [e for e in ends if not e.get("continued", False)]
    begun = reply_begun_at(events, heard.last_voiced_at, heard.arrivals)
    last = answered[-1] if answered else None
    question = next((e["text"] for e in finals if last and e["turn"] == last["turn"]), "")
    row: dict[str, Any] = {
        "kind": spoken.kind,
        "path": path,
        "voice": spoken.voice,
        "kb": spoken.kb,
        "said": spoken.text,
        "heard": [e["text"] for e in finals],
        "replies": len(answered),
        "continued": sum(bool(e.get("continued")) for e in ends),
        "ignored": sum(e["type"] == "transcript.final" and e["ignored"] for e in events),
        "perceived_ms": None if begun is None else round((begun - heard.last_voiced_at) * 1000),
        "first_audio_ms": last["timings_ms"].get("first_audio") if last else None,
        "asr_ms": last["timings_ms"].get("asr") if last else None,
        "ahead": bool(last and last.get("ahead")),
    }
    if spoken.halves is not None:
        first, second = spoken.halves
        whole = holds(question, first, second) and holds(question, second, first)
        row["pause_s"] = spoken.pause_s
        if len(answered) > 1:
            row["outcome"] = "split"
        elif len(answered) == 1 and whole:
            row["outcome"] = "one turn"
        else:
            row["outcome"] = "other"
    return row


# ----------------------------------------------------------------------------- running it


async def run(
    settings: Settings,
    voices: list[str],
    paths: list[str],
    asked: list[Spoken],
    split: list[Spoken],
) -> dict[str, Any]:
    load_before = os.getloadavg()
    services = load_services(settings, agent=build_agent(settings.answering())[0])
    rows: Rows = []
    number = 0
    try:
        for kb in (*TRADES, "demo"):
            mine = [s for s in (*asked, *split) if s.kb == kb]
            if not mine:
                continue
            async with serving(services, settings, kb) as server:
                if number == 0:  # the models' first calls are slower: one call each, not kept
                    for path in paths:
                        number += 1
                        await place_call(server, path, mine[0], number)
                for spoken in mine:
                    for path in paths:
                        number += 1
                        hits = services.speech.hits
                        heard = await place_call(server, path, spoken, number)
                        rows.append(row_of(spoken, path, heard))
                        rows[-1]["from_cache"] = services.speech.hits > hits
                        print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        services.close()
    return {
        "machine": machine(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "turns": dataclasses.asdict(settings.turns),
        "voices": voices,
        "paths": paths,
        "latency": summarize_latency(rows, voices, paths),
        "split": summarize_split(rows, voices, paths),
        "rows": rows,
    }


def stats(rows: Rows, name: str) -> dict[str, float]:
    values = [float(row[name]) for row in rows if row.get(name) is not None]
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}


def groups(
    rows: Rows, kind: str, voices: list[str], paths: list[str]
) -> Iterator[tuple[str, str, Rows]]:
    """(path, voice, rows) of each path and voice, and of each path with every voice ("all")."""
    for path in paths:
        of_path = [r for r in rows if r["kind"] == kind and r["path"] == path]
        for voice in voices:
            yield path, voice, [r for r in of_path if r["voice"] == voice]
        yield path, "all", of_path


def summarize_latency(rows: Rows, voices: list[str], paths: list[str]) -> Rows:
    return [
        {
            "path": path,
            "voice": voice,
            "questions": len(group),
            "perceived_ms": stats(group, "perceived_ms"),
            "first_audio_ms": stats(group, "first_audio_ms"),
            "first_audio_made_ms": stats(
                [r for r in group if not r["from_cache"]], "first_audio_ms"
            ),
            "from_cache": sum(r["from_cache"] for r in group),
            "asr_ms": stats(group, "asr_ms"),
            "ahead": sum(r["ahead"] for r in group),
            "split": sum(r["replies"] > 1 for r in group),
            "no_reply": sum(r["perceived_ms"] is None for r in group),
        }
        for path, voice, group in groups(rows, "latency", voices, paths)
    ]


def summarize_split(rows: Rows, voices: list[str], paths: list[str]) -> Rows:
    return [
        {
            "path": path,
            "voice": voice,
            "requests": len(group),
            "one_turn": sum(r["outcome"] == "one turn" for r in group),
            "split": sum(r["outcome"] == "split" for r in group),
            "other": sum(r["outcome"] == "other" for r in group),
            "continued": sum(r["continued"] > 0 for r in group),
            "perceived_ms": stats(group, "perceived_ms"),
        }
        for path, voice, group in groups(rows, "split", voices, paths)
    ]


def tables(result: dict[str, Any]) -> str:
    def cell(s: dict[str, float]) -> str:
        return "-" if not s["n"] else f"{s['p50']:.0f} / {s['p95']:.0f}"

    lines = []
    if any(s["questions"] for s in result["latency"]):
        lines += [
            "| path | voice | questions | perceived p50 / p95 | first audio p50 / p95 "
            "| first clause from the cache | first audio, clause made, p50 / p95 "
            "| ASR after end p50 / p95 | answered ahead | split | no reply |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in result["latency"]:
            lines.append(
                f"| {s['path']} | {s['voice']} | {s['questions']} | {cell(s['perceived_ms'])} "
                f"| {cell(s['first_audio_ms'])} | {s['from_cache']} "
                f"| {cell(s['first_audio_made_ms'])} | {cell(s['asr_ms'])} | {s['ahead']} "
                f"| {s['split']} | {s['no_reply']} |"
            )
        lines.append("")
    if any(s["requests"] for s in result["split"]):
        lines += [
            "| path | voice | split requests | one turn | split | other "
            "| joined by a continuation | perceived p50 / p95 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in result["split"]:
            lines.append(
                f"| {s['path']} | {s['voice']} | {s['requests']} | {s['one_turn']} "
                f"| {s['split']} | {s['other']} | {s['continued']} | {cell(s['perceived_ms'])} |"
            )
    return "\n".join(lines)


def overrides(pairs: list[str]) -> dict[str, str]:
    """`section.name=value` pairs as the environment variables `load_settings` reads."""
    environ = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"--set {pair!r}: expected section.name=value")
        environ[ENV_PREFIX + key.replace(".", "_").upper()] = value
    return environ


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1, help="say everything this many times")
    parser.add_argument("--voices", default="piper,espeak,flite", help="piper, espeak, flite")
    parser.add_argument("--paths", default="twilio,call", help="twilio, call, sip")
    parser.add_argument("--questions", type=int, default=10, help="latency questions per voice")
    parser.add_argument("--requests", type=int, default=len(SPLIT_REQUESTS), help="split requests")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.NAME=VALUE")
    parser.add_argument("--json", type=Path, help="write every call's row here")
    args = parser.parse_args()
    voices = [VOICES.get(v, v) for v in args.voices.split(",") if v]
    paths = [p for p in args.paths.split(",") if p]
    if not set(paths) <= set(PATHS):
        raise SystemExit(f"--paths: expected some of {', '.join(PATHS)}")
    check_voices(tuple(voices))
    settings = load_settings(
        environ={**os.environ, **overrides(args.set)}, flags={"llm": "extractive"}
    )
    if "sip" in paths:
        settings = dataclasses.replace(
            settings, sip=dataclasses.replace(settings.sip, listen="udp:127.0.0.1:0")
        )
    logging.basicConfig(level=logging.WARNING)
    asked, split = prepare(voices, args.questions, args.requests, args.rounds)
    result = asyncio.run(run(settings, voices, paths, asked, split))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    before, after = result["load_average_before_after"]
    turns = ", ".join(f"{k} {v}" for k, v in result["turns"].items() if k.endswith("_ms"))
    print(f"{result['machine']}\nturns: {turns}")
    print(f"load average (1 min) before / after the run: {before} / {after}")
    print("timings in ms")
    print(tables(result))


if __name__ == "__main__":
    main()
