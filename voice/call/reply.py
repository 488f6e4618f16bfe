"""A reply on its way out: clauses → speech normalization → Piper → caller's format → paced send."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.types import AnswerEnd, AnswerEvent, AnswerText
from tts.cache import SpeechCache
from tts.clauses import ClauseSplitter
from tts.normalize import normalize_for_speech
from voice.call.clock import WALL_CLOCK, Clock
from voice.call.transport import Transport
from voice.channels.codecs import AudioFormat, StreamResampler, float_to_int16, int16_to_float
from voice.channels.protocol import Timings
from voice.config import CallSettings
from voice.ops.services import Voice

log = logging.getLogger(__name__)

APOLOGY = "apology"
"""`reply.end.backend` of the words spoken when part of the server failed the call
(`Script.apology`)."""
URGENT_LEFT_MS = 2500
"""A later clause asked for with less than this much of the reply's audio left to play, plus
its own synthesis on a busy server (`BUSY_MS_PER_CHAR` a character), is urgent: it cannot wait
behind other calls' first clauses for the workers' patience (2 s) and still be made before the
caller's audio runs dry."""
BUSY_MS_PER_CHAR = 15
"""What a character of a clause may take to synthesize while 8 calls share two cores: on the
slower of the 2-core machines measured, Piper takes 5-6 ms a character on idle cores, and a
reply's first clause took 13-14 ms a character at the median under that load, waiting included
(docs/benchmarks.md)."""
SYNTHESIZE_AHEAD_MS = 6000
"""A reply's later clauses are synthesized once less than this much audio is left to play
before them: the workers' patience (2 s) and a sentence of 240 characters made on a busy server
(3.6 s), so that even a long clause after a short one is ready in time. At 3 s, a clause asked
for then was not urgent, could wait out the patience, and then took its own synthesis: most
stalls of the 8-caller load came at the second and third clauses so (docs/benchmarks.md)."""
FIRST_CLAUSE_LEAST_CHARS = 20
"""A reply's first clause holds at least this many characters, about a second of speech: a
shorter first sentence ("Yes.", "Of course.") is said with what follows. Alone it would leave
the clause after it half a second to be made in, less than a busy synthesizer may take to reach
it: the stalls over 200 ms of the 8-caller load came after a "Yes." (docs/benchmarks.md)."""
PLAYBACK_REPORT_GRACE_S = 2.0
"""How long past the expected end of a reply to wait for the caller's side to report that it
was played (a carrier's last mark), before going on without the report."""


@dataclass
class Reply:
    """One turn's reply while it is being made and played. Belongs to one call."""

    turn: int
    question: str
    spoken_at: float
    """Monotonic time the end of the caller's speech was detected (or the typed question came)."""
    timings: Timings = field(default_factory=Timings)
    apology: bool = False
    """The reply says sorry for a failure of the call (`Script.apology`)."""
    continued: bool = False
    """Stopped because the caller went on with the question (see `protocol.ReplyEnd`)."""
    text: list[str] = field(default_factory=list)
    clauses: list[tuple[str, int, int]] = field(default_factory=list)
    """(clause, start ms, end ms) in the reply audio."""
    sent_samples: int = 0
    """Reply audio sent so far, in samples at the caller's rate."""
    sent_ms: int = 0
    """The same in whole milliseconds (counted from the samples, so no frame's fraction of a
    millisecond is lost)."""
    play_start: float | None = None
    """When the caller started playing the reply, on the call's `Clock` (None: no audio yet)."""
    playing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the first audio goes out (`play_start`)."""
    stopped_at: float | None = None
    """When the reply was interrupted, on the call's `Clock`."""
    end: AnswerEnd = field(default_factory=AnswerEnd)
    task: asyncio.Task[None] | None = None
    ahead: AnswerAhead | None = None
    """The answer, made ahead of the turn's end (its first clause's audio with it)."""

    def wrote(self) -> None:
        """The answer's first words were written: noted in `timings` the first time."""
        if self.timings.first_text is None:
            self.timings = dataclasses.replace(self.timings, first_text=self._elapsed_ms())

    def sounded(self) -> None:
        """The reply's first audio was sent: noted in `timings` the first time."""
        if self.timings.first_audio is None:
            self.timings = dataclasses.replace(self.timings, first_audio=self._elapsed_ms())

    def _elapsed_ms(self) -> int:
        return round((time.monotonic() - self.spoken_at) * 1000)

    def played_ms(self, realtime: bool, now: float) -> int:
        """Reply audio the caller has played by `now` (on the call's `Clock`): what was sent,
        less what was still buffered ahead of real time when the reply stopped (a `clear` drops
        that)."""
        if not realtime or self.play_start is None:
            return self.sent_ms
        until = self.stopped_at if self.stopped_at is not None else now
        return max(0, min(self.sent_ms, round((until - self.play_start) * 1000)))

    def heard(self, played_ms: int) -> str:
        """The reply up to `played_ms` of its audio: whole clauses, then a share of words."""
        parts = []
        for clause, start, end in self.clauses:
            if start >= played_ms:
                break
            if end <= played_ms:
                parts.append(clause)
            else:
                clause_words = clause.split()
                share = (played_ms - start) / max(1, end - start)
                parts.append(" ".join(clause_words[: round(share * len(clause_words))]))
        return " ".join(p for p in parts if p)


def clause_splitter(settings: CallSettings) -> ClauseSplitter:
    """The splitter that cuts one reply's text into the clauses synthesized one by one."""
    return ClauseSplitter(
        first_max_chars=settings.first_clause_chars or None,
        first_least_chars=FIRST_CLAUSE_LEAST_CHARS,
    )


async def prepare_first_clauses(
    texts: Iterable[str], synthesizer: Voice, cache: SpeechCache, settings: CallSettings
) -> None:
    """Make the first clause of each of `texts` — replies said as written, like the handoff
    message — into `cache` before a caller waits for it; not urgent, so a call's first
    clause goes first. Nothing when the cache keeps nothing."""
    if not cache.max_bytes:
        return
    for text in texts:
        splitter = clause_splitter(settings)
        clauses = splitter.feed_written(text) or splitter.flush()
        spoken = normalize_for_speech(clauses[0]) if clauses else ""
        if spoken.strip() and spoken not in cache:
            cache.put(spoken, await synthesizer.synthesize(spoken, urgent=False))


class AnswerAhead:
    """An answer made ahead: begun on the speculative transcript of a pause, before the turn is
    known to be over, and held — nothing is sent — until the turn ends with the same question
    (`events`, the first clause's audio in `first_clause`) or the caller goes on (`cancel`,
    which also stops a language model's request). docs/protocol.md, "Turn-taking"."""

    def __init__(
        self,
        question: str,
        memory_size: int,
        answer: AsyncIterator[AnswerEvent],
        voice: Callable[[str], Coroutine[Any, Any, np.ndarray]],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        splitter: ClauseSplitter,
    ) -> None:
        """`spawn` starts its work (the writing, the first clause's speech): the call's, so that
        closing the call stops it. `splitter` cuts the first clause as the reply's own
        splitter will (`clause_splitter`)."""
        self.question = question
        self.memory_size = memory_size
        """How many exchanges the call remembered when it was begun: once one more is
        remembered, it answers a call that is gone."""
        self.first_clause: tuple[str, asyncio.Future[np.ndarray]] | None = None
        """The first clause and its audio, once the answer's words make one."""
        self._voice = voice
        self._spawn = spawn
        self._events: list[AnswerEvent] = []
        self._failure: Exception | None = None
        self._written = False
        self._more = asyncio.Event()
        self._splitter = splitter
        self._task = spawn(self._write(answer))

    def answers(self, question: str, memory_size: int) -> bool:
        """Whether it answers `question` asked with `memory_size` exchanges remembered."""
        return question == self.question and memory_size == self.memory_size

    async def events(self) -> AsyncIterator[AnswerEvent]:
        """The answer's events, those made so far and then the rest as they come; raises what
        the answer raised."""
        given = 0
        while True:
            while given < len(self._events):
                yield self._events[given]
                given += 1
            if self._written:
                break
            self._more.clear()
            await self._more.wait()
        if self._failure is not None:
            raise self._failure

    def cancel(self) -> None:
        self._task.cancel()
        if self.first_clause is not None:
            self.first_clause[1].cancel()

    async def _write(self, answer: AsyncIterator[AnswerEvent]) -> None:
        try:
            async for event in answer:
                self._events.append(event)
                self._more.set()
                if self.first_clause is None and isinstance(event, AnswerText):
                    self._speak_first(self._splitter.feed_written(event.text))
            if self.first_clause is None:
                self._speak_first(self._splitter.flush())
        except Exception as err:
            self._failure = err
        finally:
            self._written = True
            self._more.set()

    def _speak_first(self, clauses: list[str]) -> None:
        if clauses:
            self.first_clause = (clauses[0], self._spawn(self._voice(clauses[0])))


class Speaker:
    """Speaks replies into one call, in the caller's format, paced like playback."""

    def __init__(
        self,
        synthesizer: Voice,
        audio_format: AudioFormat,
        settings: CallSettings,
        realtime: bool,
        transport: Transport,
        on_frame: Callable[[np.ndarray], None] = lambda frame: None,
        clock: Clock = WALL_CLOCK,
        cache: SpeechCache | None = None,
    ) -> None:
        """`cache`: the server's first clauses said before (none: each is made anew)."""
        self._synthesizer = synthesizer
        self._cache = cache if cache is not None else SpeechCache(0)
        self._format = audio_format
        self._settings = settings
        self.realtime = realtime
        """False: send audio as fast as it is made (testers); True: at most
        `playback_lead_ms` ahead of real time."""
        self._transport = transport
        self._on_frame = on_frame
        """Sees each int16 frame at the caller's rate as it is sent (the call recording)."""
        self.clock = clock
        """What "real time" is for the pacing: the wall clock but in tests."""

    async def speak(self, reply: Reply, clauses: asyncio.Queue[str | None]) -> None:
        """Speak clauses until None, then wait until the caller has played them.

        Each clause after the first is synthesized while the audio before it plays, once less
        than `SYNTHESIZE_AHEAD_MS` of that audio is left (a few clauses ahead, when they are
        short): ready before the caller's audio runs out, and seldom made for a reply that is
        cut off. Cancelling `speak` drops what was made ahead."""
        resampler = StreamResampler(self._synthesizer.sample_rate, self._format.sample_rate)
        ready: asyncio.Queue[tuple[str, np.ndarray] | BaseException | None] = asyncio.Queue()
        ahead = asyncio.create_task(self._synthesize_ahead(reply, clauses, ready))
        try:
            while (item := await ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                clause, audio = item
                samples = float_to_int16(resampler.process(int16_to_float(audio)))
                start = reply.sent_ms
                end = start + len(samples) * 1000 // self._format.sample_rate
                reply.clauses.append((clause.strip(), start, end))
                await self._send(reply, samples)
        finally:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)
        await self._send(reply, float_to_int16(resampler.flush()))
        await self._played_out(reply)

    async def _synthesize_ahead(
        self,
        reply: Reply,
        clauses: asyncio.Queue[str | None],
        ready: asyncio.Queue[tuple[str, np.ndarray] | BaseException | None],
    ) -> None:
        """Synthesize clauses into `ready` until None (which is passed on); a failure is passed
        on as the exception, for `speak` to raise."""
        first, made_ms = True, 0
        rate = self._synthesizer.sample_rate
        second: tuple[str | None, asyncio.Future[np.ndarray] | None] | None = None
        """The clause after the first, taken (and asked for) with it."""
        try:
            while True:
                clause, made = second if second is not None else (await clauses.get(), None)
                second = None
                if clause is None:
                    break
                making = made if made is not None else self._asked(reply, clause, first, made_ms)
                if first and not clauses.empty():
                    # Written already: asked for now, urgent, so that it waits in line from
                    # now, not behind what other calls ask for while the first is made. It has
                    # only the first clause's audio (a second or two) to be made in.
                    after = clauses.get_nowait()
                    second = (
                        after,
                        None if after is None else asyncio.ensure_future(self.voice(after)),
                    )
                audio = await making
                if len(audio):  # else the next clause is the first that will play
                    first = False
                    made_ms += len(audio) * 1000 // rate
                    await ready.put((clause, audio))
        except Exception as err:
            await ready.put(err)
            return
        finally:
            if second is not None and second[1] is not None:  # the reply ended before it
                second[1].cancel()
                await asyncio.gather(second[1], return_exceptions=True)
        await ready.put(None)

    async def _asked(self, reply: Reply, clause: str, first: bool, made_ms: int) -> np.ndarray:
        """A clause's audio, asked for when it is due: the first at once; a later one once
        `SYNTHESIZE_AHEAD_MS` are left of the `made_ms` before it.

        The first clause is what the caller waits for; later ones have the audio before them to
        play meanwhile, and let other calls' first clauses go first — unless that audio is too
        short to wait out their patience and their own synthesis."""
        urgent = first
        if not first and self.realtime:
            await reply.playing.wait()
            assert reply.play_start is not None
            played_ms = (self.clock.now() - reply.play_start) * 1000
            await self.clock.sleep(max(0, made_ms - played_ms - SYNTHESIZE_AHEAD_MS) / 1000)
            left_ms = made_ms - (self.clock.now() - reply.play_start) * 1000
            urgent = left_ms < URGENT_LEFT_MS + BUSY_MS_PER_CHAR * len(clause)
        made_ahead = reply.ahead.first_clause if reply.ahead is not None else None
        if first and made_ahead is not None and made_ahead[0] == clause:
            return await made_ahead[1]
        return await self.voice(clause, urgent=urgent)

    async def voice(self, clause: str, urgent: bool = True) -> np.ndarray:
        """A clause's speech, at the voice's rate (empty for a clause with nothing to say).
        An urgent one — a caller waits for it — is kept, and said again from the cache."""
        spoken = normalize_for_speech(clause)
        if not spoken.strip():
            return np.zeros(0, np.int16)
        if not urgent:
            return await self._synthesizer.synthesize(spoken, urgent=False)
        audio = self._cache.get(spoken)
        if audio is None:
            audio = await self._synthesizer.synthesize(spoken, urgent=True)
            self._cache.put(spoken, audio)
        return audio

    async def spoken(self, text: str) -> np.ndarray:
        """`text` in the voice, int16 at the caller's rate: words said outside a reply (the
        hold message). Made when no caller waits on a first clause (not urgent)."""
        audio = await self.voice(text, urgent=False)
        resampler = StreamResampler(self._synthesizer.sample_rate, self._format.sample_rate)
        samples = resampler.process(int16_to_float(audio))
        return float_to_int16(np.concatenate([samples, resampler.flush()]))

    def played_ms(self, reply: Reply) -> int:
        """Reply audio the caller has played: as their side reports it, else as estimated."""
        reported = self._transport.played_ms(reply.turn)
        if reported is not None:
            return reported
        return reply.played_ms(self.realtime, self.clock.now())

    async def _played_out(self, reply: Reply) -> None:
        """Wait until the caller has played the whole reply: until their side reports it, or
        (on a wire that does not report) until the clock says so."""
        if reply.play_start is None:
            return
        remaining = reply.play_start + reply.sent_ms / 1000 - self.clock.now()
        if self._transport.played_ms(reply.turn) is None:
            if self.realtime and remaining > 0:
                await self.clock.sleep(remaining)
            return
        reported = asyncio.ensure_future(self._transport.played(reply.turn, reply.sent_ms))
        given_up = asyncio.ensure_future(
            self.clock.sleep(max(0.0, remaining) + PLAYBACK_REPORT_GRACE_S)
        )
        try:
            await asyncio.wait({reported, given_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reported.cancel()
            given_up.cancel()
        if not reported.done() or reported.cancelled():
            log.warning("turn %d: the caller's side never reported the reply played", reply.turn)

    async def _send(self, reply: Reply, samples: np.ndarray) -> None:
        rate = self._format.sample_rate
        step = rate * self._settings.reply_frame_ms // 1000
        lead_ms = self._settings.playback_lead_ms
        for offset in range(0, len(samples), step):
            frame = samples[offset : offset + step]
            now = self.clock.now()
            if reply.play_start is None:
                reply.play_start = now
                reply.sounded()
                reply.playing.set()
            elif self.realtime:
                played_ms = (now - reply.play_start) * 1000
                if played_ms > reply.sent_ms:  # the caller ran dry: playback restarts now
                    reply.play_start = now - reply.sent_ms / 1000
                elif reply.sent_ms - played_ms > lead_ms:
                    await self.clock.sleep((reply.sent_ms - played_ms - lead_ms) / 1000)
            self._on_frame(frame)
            await self._transport.send_audio(self._format.encode(frame))
            reply.sent_samples += len(frame)
            reply.sent_ms = reply.sent_samples * 1000 // rate
            await self._transport.mark(reply.turn, reply.sent_ms)


@dataclass(frozen=True)
class Script:
    """Fixed words spoken as a reply, instead of an answer from the agent."""

    text: str
    backend: str
    """What `reply.end` names as the writer: "supervisor", "keypad" or "apology"."""
    handoff: bool = False
    rules: tuple[str, ...] = ()
    apology: bool = False
    """Said because part of the call failed: `*` does not repeat it, and no apology follows
    it if it fails too."""

    @classmethod
    def sorry(cls, text: str, handoff: bool = False, rules: tuple[str, ...] = ()) -> Script:
        """An apology, written by "apology"."""
        return cls(text, APOLOGY, handoff, rules, apology=True)


async def scripted(script: Script) -> AsyncIterator[AnswerEvent]:
    yield AnswerText(script.text)
    yield AnswerEnd(handoff=script.handoff, rules=script.rules, backend=script.backend)
