"""One call, end to end: audio in → turn detection → transcript → answer → speech → audio out.

    caller audio → decode/resample → VAD → TurnDetector ─┬→ Transcriber → Agent → clauses
                                                         │  → normalize → Synthesizer → send
                                                         └→ barge-in check (words → clear)

A `CallSession` belongs to one call and one event loop. The models it uses (`Services`) are
shared by every call and run in their own threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agent.types import Agent, AnswerEnd, AnswerText, Exchange
from asr.vad import VadModel
from asr.whisper import Transcriber
from tts.clauses import ClauseSplitter
from tts.normalize import normalize_for_speech
from tts.piper import Synthesizer
from voice import protocol
from voice.codecs import AudioFormat, StreamResampler, float_to_int16, int16_to_float
from voice.config import Settings
from voice.turns import (
    ACKNOWLEDGEMENT_HINT,
    TurnDetector,
    TurnEnded,
    TurnEvent,
    TurnPaused,
    TurnResumed,
    TurnStarted,
    interrupts,
)

log = logging.getLogger(__name__)

ASR_RATE = 16_000


@dataclass
class Services:
    """The loaded models and the agent; one set serves every call."""

    settings: Settings
    transcriber: Transcriber
    synthesizer: Synthesizer
    vad: VadModel
    agent: Agent
    hotwords: str = ""
    """Words to bias recognition toward (the knowledge base's own terms)."""
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    """Work that runs as long as the server does (watching the KB for changes)."""

    def close(self) -> None:
        self.transcriber.close()
        self.synthesizer.close()


class CallClosed(Exception):
    """The caller is gone or stalled; the call is being closed. Tasks that see it just stop."""


class Transport(Protocol):
    """How a session talks to its caller. Both sends raise CallClosed once the call is over."""

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...


@dataclass
class _Reply:
    """A turn's reply while it is being made and played."""

    turn: int
    question: str
    spoken_at: float
    """Loop time the end of the caller's speech was detected (or the typed question came)."""
    timings: dict[str, int | None]
    text: list[str] = field(default_factory=list)
    clauses: list[tuple[str, int, int]] = field(default_factory=list)
    """(clause, start ms, end ms) in the reply audio."""
    sent_ms: int = 0
    play_start: float | None = None
    end: AnswerEnd = field(default_factory=AnswerEnd)
    task: asyncio.Task[None] | None = None

    def heard(self) -> str:
        """The reply up to the audio the caller was sent: whole clauses, then a share of words."""
        parts = []
        for clause, start, end in self.clauses:
            if start >= self.sent_ms:
                break
            if end <= self.sent_ms:
                parts.append(clause)
            else:
                clause_words = clause.split()
                share = (self.sent_ms - start) / max(1, end - start)
                parts.append(" ".join(clause_words[: round(share * len(clause_words))]))
        return " ".join(p for p in parts if p)


class CallSession:
    def __init__(self, services: Services, start: protocol.Start, transport: Transport) -> None:
        self._services = services
        self._settings = services.settings
        self._start = start
        self._transport = transport
        self._format = start.audio
        self._inbound_resampler = StreamResampler(self._format.sample_rate, ASR_RATE)
        self._inbound: asyncio.Queue[np.ndarray] = asyncio.Queue(
            self._settings.call.inbound_queue_frames
        )
        self._vad = services.vad.stream()
        self._turns = TurnDetector(self._settings.turns)
        self._turn = 0
        self._memory: list[Exchange] = []
        self._reply: _Reply | None = None
        self._early: tuple[int, asyncio.Task[str]] | None = None
        """(turn, transcription of the paused utterance) started before the turn ended."""
        self._partial_at = 0
        self._partial_task: asyncio.Task[None] | None = None
        self._barge_check_at = 0
        self._barge_task: asyncio.Task[None] | None = None
        self._overlapped = False
        """The current utterance began while a reply was being made or played."""
        self._turn_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def audio_format(self) -> AudioFormat:
        return self._format

    # ------------------------------------------------------------ input from the caller

    async def on_audio(self, frame: bytes) -> None:
        """Queue a checked caller frame. Waits (holding back the socket) when the queue is full."""
        samples = int16_to_float(self._format.decode(frame))
        await self._inbound.put(self._inbound_resampler.process(samples))

    async def on_text(self, text: str) -> None:
        """A typed question: a turn of its own, answered without speech recognition."""
        self._turn += 1
        async with self._turn_lock:
            await self._interrupt()
            await self._send(protocol.FinalTranscript(turn=self._turn, text=text))
            self._begin_reply(self._turn, text, time.monotonic(), {"asr": None})

    async def listen(self) -> None:
        """Process caller audio until cancelled."""
        while True:
            chunks = [await self._inbound.get()]
            while not self._inbound.empty():
                chunks.append(self._inbound.get_nowait())
            audio = np.concatenate(chunks)
            probabilities = await asyncio.to_thread(self._vad.process, audio)
            for event in self._turns.push(audio, probabilities):
                await self._on_turn_event(event)
            if self._turns.in_speech:
                self._maybe_partial()
                self._maybe_check_barge_in()

    async def close(self) -> None:
        """Stop everything this call started; nothing keeps running after it returns."""
        pending = list(self._tasks)
        if self._reply is not None and self._reply.task is not None:
            pending.append(self._reply.task)
        if self._early is not None:
            pending.append(self._early[1])  # type: ignore[arg-type]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------ turn-taking

    async def _on_turn_event(self, event: TurnEvent) -> None:
        if isinstance(event, TurnStarted):
            self._turn += 1
            self._overlapped = self._replying()
            self._partial_at = self._settings.turns.partial_interval_ms
            self._barge_check_at = self._settings.turns.barge_in_min_ms
            await self._send(protocol.SpeechStarted(turn=self._turn, at_ms=event.at_ms))
        elif isinstance(event, TurnPaused):
            self._drop_early()
            self._early = (self._turn, asyncio.create_task(self._transcribe(event.audio)))
        elif isinstance(event, TurnResumed):
            self._drop_early()
        elif isinstance(event, TurnEnded):
            await self._send(
                protocol.SpeechStopped(turn=self._turn, at_ms=event.at_ms, reason=event.reason)
            )
            early = self._early[1] if self._early and self._early[0] == self._turn else None
            if event.reason != "silence":
                self._drop_early()
                early = None
            self._early = None
            self._spawn(
                self._finish_utterance(self._turn, event, early, time.monotonic(), self._overlapped)
            )

    async def _finish_utterance(
        self,
        turn: int,
        ended: TurnEnded,
        early: asyncio.Task[str] | None,
        ended_at: float,
        overlapped: bool,
    ) -> None:
        """Take the ended utterance as the next question, unless it overlapped a reply without
        interrupting it ("uh-huh") or holds no words."""
        audio = ended.audio
        if overlapped and not await self._interrupts(audio, ended.speech_ms):
            if early is not None:
                early.cancel()
            async with self._turn_lock:
                await self._send(protocol.FinalTranscript(turn=turn, text="", ignored=True))
            return
        text = await early if early is not None else await self._transcribe(audio)
        asr_ms = _ms_since(ended_at)
        async with self._turn_lock:
            ignored = not text.strip()
            await self._send(protocol.FinalTranscript(turn=turn, text=text, ignored=ignored))
            if ignored:
                log.info("turn %d ignored: no words", turn)
                return
            await self._interrupt()
            self._begin_reply(turn, text, ended_at, {"asr": asr_ms})

    async def _interrupts(self, audio: np.ndarray, speech_ms: int) -> bool:
        """Whether speech over a reply interrupts it. Heard with an acknowledgement hint instead
        of the KB's words, which would turn "uh-huh" into "hub"."""
        result = await self._services.transcriber.transcribe(
            audio, hotwords=ACKNOWLEDGEMENT_HINT, language=self._start.language
        )
        log.debug("over the reply (%d ms): %r", speech_ms, result.text)
        return interrupts(result.text, speech_ms, self._settings.turns.barge_in_words_ms)

    def _maybe_partial(self) -> None:
        interval = self._settings.turns.partial_interval_ms
        if interval <= 0 or self._turns.speech_ms < self._partial_at:
            return
        self._partial_at = self._turns.speech_ms + interval
        busy = self._partial_task is not None and not self._partial_task.done()
        if busy or self._services.transcriber.busy:
            return
        self._partial_task = self._spawn(self._partial(self._turn, self._turns.utterance()))

    async def _partial(self, turn: int, audio: np.ndarray) -> None:
        text = await self._transcribe(audio)
        if text and turn == self._turn and self._turns.in_speech:
            await self._send(protocol.PartialTranscript(turn=turn, text=text))

    def _maybe_check_barge_in(self) -> None:
        """While a reply plays, enough speech with real words in it interrupts the reply."""
        if not self._replying() or self._turns.speech_ms < self._barge_check_at:
            return
        if self._barge_task is not None and not self._barge_task.done():
            return
        self._barge_check_at = self._turns.speech_ms + self._settings.turns.barge_in_recheck_ms
        self._barge_task = self._spawn(
            self._check_barge_in(self._turn, self._turns.utterance(), self._turns.speech_ms)
        )

    async def _check_barge_in(self, turn: int, audio: np.ndarray, speech_ms: int) -> None:
        if not await self._interrupts(audio, speech_ms) or turn != self._turn:
            return
        async with self._turn_lock:
            if self._replying():
                log.info("barge-in on turn %d", turn)
                await self._interrupt()

    def _replying(self) -> bool:
        return self._reply is not None

    def _drop_early(self) -> None:
        if self._early is not None:
            self._early[1].cancel()
            self._early = None

    async def _transcribe(self, audio: np.ndarray) -> str:
        result = await self._services.transcriber.transcribe(
            audio, hotwords=self._services.hotwords or None, language=self._start.language
        )
        return result.text

    # ------------------------------------------------------------ the reply

    def _begin_reply(
        self, turn: int, question: str, spoken_at: float, timings: dict[str, int | None]
    ) -> None:
        reply = _Reply(turn=turn, question=question, spoken_at=spoken_at, timings=timings)
        self._reply = reply
        reply.task = asyncio.create_task(self._run_reply(reply))
        reply.task.add_done_callback(_log_failure)

    async def _run_reply(self, reply: _Reply) -> None:
        clauses: asyncio.Queue[str | None] = asyncio.Queue(maxsize=16)
        failed = closed = False
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._write_answer(reply, clauses))
                group.create_task(self._speak(reply, clauses))
        except* CallClosed:
            closed = True
        except* Exception as failures:
            failed = True
            for failure in failures.exceptions:
                log.error("reply to turn %d failed: %r", reply.turn, failure)
        if closed:
            return
        if failed:
            await self._send(
                protocol.Error(
                    code="answer_failed", message="Sorry, the answer could not be completed."
                )
            )
        await self._finish_reply(reply, interrupted=False)

    async def _write_answer(self, reply: _Reply, clauses: asyncio.Queue[str | None]) -> None:
        splitter = ClauseSplitter()
        memory = self._memory[-self._settings.agent.memory_turns :]
        async for event in self._services.agent.answer(reply.question, memory):
            if isinstance(event, AnswerText):
                if not reply.text:
                    reply.timings["first_text"] = _ms_since(reply.spoken_at)
                reply.text.append(event.text)
                await self._send(protocol.ReplyText(turn=reply.turn, text=event.text))
                for clause in splitter.feed(event.text):
                    await clauses.put(clause)
            elif isinstance(event, AnswerEnd):
                reply.end = event
        for clause in splitter.flush():
            await clauses.put(clause)
        await clauses.put(None)

    async def _speak(self, reply: _Reply, clauses: asyncio.Queue[str | None]) -> None:
        synthesizer = self._services.synthesizer
        resampler = StreamResampler(synthesizer.sample_rate, self._format.sample_rate)
        while (clause := await clauses.get()) is not None:
            spoken = normalize_for_speech(clause)
            audio = await synthesizer.synthesize(spoken) if spoken.strip() else None
            if audio is None or not len(audio):
                continue
            samples = float_to_int16(resampler.process(int16_to_float(audio)))
            start = reply.sent_ms
            end = start + len(samples) * 1000 // self._format.sample_rate
            reply.clauses.append((clause.strip(), start, end))
            await self._send_audio(reply, samples)
        await self._send_audio(reply, float_to_int16(resampler.flush()))
        await self._wait_played(reply)

    async def _send_audio(self, reply: _Reply, samples: np.ndarray) -> None:
        """Send reply audio in frames, at most `playback_lead_ms` ahead of real time."""
        call = self._settings.call
        rate = self._format.sample_rate
        step = rate * call.reply_frame_ms // 1000
        for offset in range(0, len(samples), step):
            frame = samples[offset : offset + step]
            now = time.monotonic()
            if reply.play_start is None:
                reply.play_start = now
                reply.timings["first_audio"] = _ms_since(reply.spoken_at)
            elif self._start.realtime_playback:
                played_ms = (now - reply.play_start) * 1000
                if played_ms > reply.sent_ms:  # the caller ran dry: playback restarts now
                    reply.play_start = now - reply.sent_ms / 1000
                elif reply.sent_ms - played_ms > call.playback_lead_ms:
                    await asyncio.sleep((reply.sent_ms - played_ms - call.playback_lead_ms) / 1000)
            await self._transport.send_bytes(self._format.encode(frame))
            reply.sent_ms += len(frame) * 1000 // rate

    async def _wait_played(self, reply: _Reply) -> None:
        if reply.play_start is None or not self._start.realtime_playback:
            return
        remaining = reply.play_start + reply.sent_ms / 1000 - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def _interrupt(self) -> None:
        """Barge-in: stop the reply, tell the caller to drop buffered audio, keep what was heard."""
        reply = self._reply
        if reply is None or reply.task is None:
            return
        reply.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reply.task
        if self._reply is reply:
            await self._send(protocol.Clear(turn=reply.turn))
            await self._finish_reply(reply, interrupted=True)

    async def _finish_reply(self, reply: _Reply, interrupted: bool) -> None:
        if self._reply is not reply:
            return
        self._reply = None
        heard = reply.heard() if interrupted else "".join(reply.text).strip()
        self._memory.append(Exchange(question=reply.question, answer=heard))
        reply.timings.setdefault("first_text", None)
        reply.timings.setdefault("first_audio", None)
        await self._send(
            protocol.ReplyEnd(
                turn=reply.turn,
                text="".join(reply.text).strip(),
                heard=heard,
                sources=list(reply.end.sources),
                handoff=reply.end.handoff,
                interrupted=interrupted,
                rules=list(reply.end.rules),
                timings_ms=reply.timings,
            )
        )

    # ------------------------------------------------------------ plumbing

    async def _send(self, event: protocol.Event) -> None:
        await self._transport.send_text(protocol.encode(event))

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task


def _ms_since(moment: float) -> int:
    return round((time.monotonic() - moment) * 1000)


def _log_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled() or isinstance(task.exception(), CallClosed):
        return
    if task.exception() is not None:
        log.error("call task failed: %r", task.exception())
