"""One call, end to end: audio in → turn detection → transcript → answer → speech → audio out.

    caller audio → decode/resample → VAD → TurnDetector ─┬→ Transcriber → Agent → clauses
                                                         │  → normalize → Synthesizer → send
                                                         └→ barge-in check (words → clear)

Once a reply hands the call off, the assistant answers no more: the call waits on hold for a
person, who takes it, speaks, and may hand it back (`voice.call.handover`).

A `CallSession` belongs to one call and one event loop. The models it uses (`Services`) are
shared by every call and run off the event loop: in worker processes by default, else threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from agent.guardrails import HUMAN_HANDOFF_MESSAGE, HUMAN_REQUEST
from agent.types import AnswerEnd, AnswerText, Exchange
from asr.whisper import Transcript
from voice.call.handover import CallSide, Handover
from voice.call.observer import CallObserver, Unobserved
from voice.call.person import Attendance, CallHeld, NotHolding
from voice.call.reply import AnswerAhead, Reply, Script, Speaker, clause_splitter, scripted
from voice.call.transport import CallClosed, Transport
from voice.call.turns import (
    ACKNOWLEDGEMENT_HINT,
    TurnDetector,
    TurnEnded,
    TurnEvent,
    TurnPaused,
    TurnResumed,
    TurnStarted,
    hear_waiting,
    interrupts,
    read_words,
)
from voice.channels import protocol
from voice.channels.codecs import (
    AudioFormat,
    LiveResampler,
    int16_to_float,
)
from voice.channels.protocol import Timings
from voice.ops.admission import MessageRate
from voice.ops.services import Services
from voice.ops.stopping import stop_all
from voice.ops.workers import WorkerDied

log = logging.getLogger(__name__)
T = TypeVar("T")

ASR_RATE = 16_000
SERVER_FAILURE = "server_failure"
"""The rule recorded on that turn."""
TYPED_BURST_S = 3.0
"""Seconds' worth of typed questions (`call.max_typed_per_s`) a caller may ask at once."""
FAILURE_SENTENCE = "Part of the server failed; the call is being handed to a person."
HANDBACK = "handback"
"""`reply.end.backend` of the words said when a supervisor hands a call back."""


@dataclass
class _Utterance:
    """What the caller is saying, from the start of their speech until it is answered."""

    turn: int
    overlapped: bool
    """It began during a reply and has not interrupted it (yet)."""
    early: asyncio.Task[Transcript] | None = None
    """Transcription started speculatively at a pause."""
    ahead: AnswerAhead | None = None
    """The answer to `early`'s words, begun before the turn is known to be over."""
    continues: str = ""
    """The question this utterance goes on with (said just before it, its reply stopped)."""
    began_ms: int = 0
    """Where it began in the caller's audio stream."""
    began_at: float = 0.0
    """When it began, on the call's clock."""

    def drop_early(self) -> None:
        """The caller went on (or the call ends): what was begun at the pause is stale."""
        if self.early is not None:
            self.early.cancel()
            self.early = None
        if self.ahead is not None:
            self.ahead.cancel()
            self.ahead = None


class CallSession:
    def __init__(
        self,
        services: Services,
        start: protocol.Start,
        transport: Transport,
        observer: CallObserver | None = None,
        hang_up: Callable[[str], None] | None = None,
        queue_handoffs: bool = True,
    ) -> None:
        """`hang_up(reason)` ends the call from the server's side (a missed handoff, a
        supervisor); `queue_handoffs` False: a handoff leaves this server for a person
        elsewhere (a carrier's `<Dial>`, a SIP transfer), so the call does not wait here."""
        self._services = services
        self._hang_up = hang_up or (lambda reason: log.info("the call is over: %s", reason))
        self._queue_handoffs = queue_handoffs
        self._observer: CallObserver = observer or Unobserved()
        self._settings = services.settings
        self._start = start
        self._transport = transport
        self._format = start.audio
        self._inbound_resampler = LiveResampler(self._format.sample_rate, ASR_RATE)
        """Each frame's audio at once: soxr's stream gave a phone's 8 kHz audio in blocks of
        about 100 ms, which came late to turn detection and to a supervisor listening in."""
        self._inbound: asyncio.Queue[np.ndarray] = asyncio.Queue(
            self._settings.call.inbound_queue_frames
        )
        self._ended: asyncio.Queue[tuple[_Utterance, TurnEnded, float]] = asyncio.Queue(4)
        """Ended utterances waiting to be recognized and answered, in order."""
        self._vad = services.vad.stream()
        turns = self._settings.turns
        if self._format.sample_rate <= 8000:
            turns = dataclasses.replace(turns, vad_threshold=turns.phone_vad_threshold)
        transcriber = services.transcriber
        self._turns = TurnDetector(turns, idle=lambda: transcriber.idle)
        self._speaker = Speaker(
            services.synthesizer,
            self._format,
            self._settings.call,
            start.realtime_playback,
            transport,
            on_frame=self._observer.reply_audio,
            clock=services.clock,
            cache=services.speech,
        )
        self._last_turn = 0
        self._newest: _Utterance | None = None
        """The utterance that began last (said, or still being said)."""
        self._last_end: tuple[int, int, float] | None = None
        """(turn, stream position in ms, time on the call's clock) where the last utterance
        ended, for continuations."""
        self._utterance: _Utterance | None = None
        self._memory: list[Exchange] = []
        self._last_answer = ""
        """The last reply's words, for the keypad's repeat."""
        self._reply: Reply | None = None
        self._typed_rate = MessageRate(services.settings.call.max_typed_per_s, TYPED_BURST_S)
        self._typed_waiting: str | None = None
        """The newest typed question waiting for the reply before it to begin playing."""
        self._partial_at = 0
        self._partial_task: asyncio.Task[None] | None = None
        self._barge_check_at = 0
        self._barge_task: asyncio.Task[None] | None = None
        self._turn_lock = asyncio.Lock()
        """Held while a turn's reply is started or stopped, so turns go out in order."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unanswered = 0
        """Utterances that ended and are not yet recognized and answered."""
        self._closed = False
        self._work_done = asyncio.Event()
        """Set when an utterance was answered, a reply ended or the call closed: a turn's work
        may be over (`finish_turn` looks again)."""
        self._draining = False
        """The server shuts down: the turn in progress finishes, no new one starts."""
        self._handover = Handover(
            services,
            self._format,
            self._speaker,
            CallSide(
                send=self._send,
                send_audio=self._send_audio,
                speak=self._speak,
                replying=lambda: self._reply is not None,
                remember=self._memory.append,
                next_turn=self._next_turn,
                hang_up=self.hang_up,
                spawn=self._spawn,
            ),
            start.language,
        )

    @property
    def audio_format(self) -> AudioFormat:
        return self._format

    @property
    def attendance(self) -> Attendance:
        """Who attends the call: the assistant, nobody yet (waiting), a person."""
        return self._handover.attendance

    @property
    def memory(self) -> list[Exchange]:
        """The call's exchanges so far (the question and what the caller heard of the reply)."""
        return list(self._memory)

    # ------------------------------------------------------------ input from the caller

    async def on_audio(self, frame: bytes) -> None:
        """Queue a checked caller frame. Waits (holding back the socket) when the queue is full."""
        samples = self._inbound_resampler.process(int16_to_float(self._format.decode(frame)))
        self._observer.caller_audio(samples)
        await self._inbound.put(samples)

    async def on_text(self, text: str) -> None:
        """A typed question: a turn of its own, answered without speech recognition, in place
        of any reply. It waits while the reply before it has not begun to play, and while the
        caller is over `call.max_typed_per_s`; a newer typed question takes the place of one
        that waits (the older is dropped, with a `question_dropped` error). So a caller who
        types faster than replies begin makes one reply's work at a time, never more.
        While the assistant does not answer (a handed-off call), it is only noted."""
        if not self._handover.attendance.answering:
            await self._handover.caller_said(self._next_turn(), text)
            return
        if self._typed_waiting is not None:
            self._typed_waiting = text
            await self._send(
                protocol.Error(
                    code="question_dropped",
                    message="A newer question took the place of one that waited for an answer.",
                )
            )
            return
        if not self._reply_pending() and self._typed_rate.take():
            await self._immediate_turn(shown=text, question=text)
            return
        self._typed_waiting = text
        self._spawn(self._ask_typed_when_due())

    def _reply_pending(self) -> bool:
        """A reply is being made and has not begun to play."""
        reply = self._reply
        return reply is not None and reply.task is not None and not reply.playing.is_set()

    async def _ask_typed_when_due(self) -> None:
        """Ask the newest waiting typed question once the reply before it plays (or ends) and
        the caller's typed-question rate allows it."""
        reply = self._reply
        if self._reply_pending():
            assert reply is not None and reply.task is not None
            playing = asyncio.ensure_future(reply.playing.wait())
            try:
                await asyncio.wait({playing, reply.task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                playing.cancel()
        await asyncio.sleep(self._typed_rate.wait_s())
        self._typed_rate.take()
        text, self._typed_waiting = self._typed_waiting, None
        if text is not None:
            await self._immediate_turn(shown=text, question=text)

    async def say(self, text: str) -> None:
        """A supervisor's message, spoken into the call at once in place of any reply."""
        await self._immediate_turn(script=Script(text, backend="supervisor"))

    async def on_key(self, digit: str) -> None:
        """A keypad digit (docs/phone.md, "Keypad"): 0 asks for a person, * repeats the last
        answer, # stops the reply. Other digits are noted and change nothing."""
        log.debug("keypad %s", digit)  # not at INFO: callers key in account numbers and PINs
        if not self._handover.attendance.answering:
            return
        if digit == "0":
            await self._immediate_turn(
                shown=f"[keypad {digit}]",
                script=Script(
                    HUMAN_HANDOFF_MESSAGE, "keypad", handoff=True, rules=(HUMAN_REQUEST,)
                ),
            )
        elif digit == "*":
            await self.stop_reply()  # a reply cut short is repeated whole
            if self._last_answer:
                await self._immediate_turn(script=Script(self._last_answer, backend="keypad"))
        elif digit == "#":
            await self.stop_reply()

    async def _immediate_turn(
        self, shown: str = "", question: str = "", script: Script | None = None
    ) -> None:
        """A turn that needs no listening (typed, keypad, a supervisor's words), taken at once in
        place of any reply: answers `question`, or speaks `script`. `shown` is its transcript."""
        if self._draining:
            return
        arrived_at = time.monotonic()
        turn = self._next_turn()
        async with self._turn_lock:
            await self._interrupt()
            if shown:
                await self._send(protocol.FinalTranscript(turn=turn, text=shown))
            self._begin_reply(turn, question, arrived_at, script=script)

    async def stop_reply(self) -> None:
        """Stop the current answer (a supervisor, the caller's stop button or keypad)."""
        async with self._turn_lock:
            await self._interrupt()

    async def hand_off(self) -> None:
        """A supervisor hands the call off: the reply stops, the caller is told, and the call
        waits for a person."""
        async with self._turn_lock:
            await self._interrupt()
            await self._send(protocol.Handoff(by="supervisor"))
        await self._wait_for_person("supervisor")

    # ------------------------------------------------------------ a person takes the call

    async def take_over(self, name: str) -> None:
        """Supervisor `name` takes the call: the reply or hold audio stops, the assistant is
        silent, and what `person_audio` brings goes to the caller.

        Raises:
            CallHeld: another person holds the call.
        """
        async with self._turn_lock:
            attendance = self._handover.attendance
            if attendance.state == "person":
                if attendance.name == name:
                    return
                raise CallHeld(attendance.name)
            await self._handover.stop_holding()  # first: what it says next is not begun
            await self._interrupt()
            await self._handover.taken(name)

    async def hand_back(self, name: str) -> None:
        """Supervisor `name` gives the call back to the assistant, which says so and answers
        again, with the call's memory (the person's exchanges in it).

        Raises:
            NotHolding: another person holds the call, or the assistant does already.
        """
        async with self._turn_lock:
            attendance = self._handover.attendance
            if attendance.answering or (attendance.state == "person" and attendance.name != name):
                raise NotHolding()
            await self._handover.stop_holding()
            await self._interrupt()
            await self._handover.given_back(name)
            self._work_done.set()  # a server shutting down waited for the person
        await self._immediate_turn(script=Script(self._settings.handoff.back_message, HANDBACK))

    async def person_audio(self, name: str, frame: bytes) -> None:
        """Speech of the person holding the call: PCM16 little-endian mono at 16 kHz, sent to
        the caller in the caller's own format, recorded, and transcribed.

        Raises:
            NotHolding: `name` does not hold the call.
        """
        await self._handover.person_audio(name, frame)

    def hang_up(self, reason: str) -> None:
        """End the call from the server's side (`reason` goes in its record)."""
        self._hang_up(reason)

    async def _wait_for_person(self, reason: str) -> None:
        """A handed-off call waits for a person, unless the handoff leaves this server."""
        if self._queue_handoffs and not self._draining:
            await self._handover.wait_for_person(reason)

    async def _speak(self, script: Script, turn: int | None = None) -> None:
        """Say `script` as a reply (of `turn`, else a turn of its own) and wait until it has
        played."""
        async with self._turn_lock:
            await self._interrupt()
            self._begin_reply(turn or self._next_turn(), "", time.monotonic(), script=script)
            reply = self._reply
        assert reply is not None and reply.task is not None
        await asyncio.wait({reply.task})

    async def _send_audio(self, frame: np.ndarray) -> None:
        """Audio that is not a reply (hold audio, a person's speech): int16 at the caller's
        rate, sent and recorded as the assistant's side of the call."""
        self._observer.reply_audio(frame)
        await self._transport.send_audio(self._format.encode(frame))

    async def listen(self) -> None:
        """Process caller audio and answer the caller's turns, until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._hear())
                group.create_task(self._answer_utterances())
        except* CallClosed:
            raise CallClosed() from None  # the caller is gone: not a failure of the call

    async def report(self, error: protocol.Error) -> None:
        """Tell the caller their message was refused (the call goes on); watchers see it too."""
        await self._send(error)

    async def finish_turn(self) -> None:
        """Let the turn in progress finish — the caller's words still being said, recognized,
        answered and played — and start no new one; and a person holding the call talk until
        they hand it back or end it. For a server shutting down (which waits only so long)."""
        self._draining = True
        while not self._closed and (
            self._utterance is not None
            or self._unanswered
            or self._reply is not None
            or self._handover.attendance.state == "person"
        ):
            self._work_done.clear()
            await self._work_done.wait()

    async def close(self) -> None:
        """Stop everything this call started; nothing keeps running after it returns.

        A reply the close cuts off (the caller hung up over it, or while a barge-in was
        stopping it) ends as interrupted, heard as far as it played: its `reply.end` goes to
        the observer, so the records keep the turn, and not to the caller, who is gone."""
        self._closed = True
        self._work_done.set()

        def running() -> set[asyncio.Future[Any]]:
            if self._utterance is not None:
                self._utterance.drop_early()
            while not self._ended.empty():
                self._ended.get_nowait()[0].drop_early()
            tasks: set[asyncio.Future[Any]] = set(self._tasks)
            if self._reply is not None and self._reply.task is not None:
                tasks.add(self._reply.task)
            return tasks

        await stop_all(running, "a call")
        reply = self._reply
        if reply is not None:
            if reply.stopped_at is None:
                reply.stopped_at = self._speaker.clock.now()
            self._observer.event(self._end_reply(reply, interrupted=True))

    # ------------------------------------------------------------ turn-taking

    async def _hear(self) -> None:
        while True:
            events = await hear_waiting(self._inbound, self._vad, self._turns)
            for event in events:
                await self._on_turn_event(event)
            if self._utterance is not None:
                self._maybe_partial(self._utterance)
                self._maybe_check_barge_in(self._utterance)

    async def _on_turn_event(self, event: TurnEvent) -> None:
        if isinstance(event, TurnStarted):
            if self._draining:
                return
            continues = await self._continuation(event.at_ms)
            started = _Utterance(
                turn=self._next_turn(),
                overlapped=self._reply is not None,
                continues=continues,
                began_ms=event.at_ms,
                began_at=self._speaker.clock.now(),
            )
            self._utterance = self._newest = started
            self._partial_at = self._settings.turns.partial_interval_ms
            self._barge_check_at = self._settings.turns.barge_in_min_ms
            await self._send(protocol.SpeechStarted(turn=started.turn, at_ms=event.at_ms))
            return
        utterance = self._utterance
        if utterance is None:
            return
        if isinstance(event, TurnPaused):
            utterance.drop_early()
            utterance.early = asyncio.create_task(self._transcribe(event.audio))
            self._spawn(self._judge(utterance, utterance.early))
        elif isinstance(event, TurnResumed):
            utterance.drop_early()
        elif isinstance(event, TurnEnded):
            ended_at = time.monotonic()
            self._utterance = None
            self._last_end = (utterance.turn, event.at_ms, self._speaker.clock.now())
            self._unanswered += 1
            if event.reason != "silence":
                utterance.drop_early()
            await self._send(
                protocol.SpeechStopped(turn=utterance.turn, at_ms=event.at_ms, reason=event.reason)
            )
            await self._ended.put((utterance, event, ended_at))

    async def _judge(self, utterance: _Utterance, early: asyncio.Task[Transcript]) -> None:
        """Read the speculative transcript of a pause: a complete question ends the turn soon,
        an unfinished one late (`TurnDetector.judge`), and its answer is begun meanwhile.
        Nothing if the caller went on."""
        await asyncio.wait({early})
        if early.cancelled() or early.exception() is not None:
            return
        if utterance is not self._utterance or utterance.early is not early:
            return
        heard = early.result()
        self._answer_ahead(utterance, heard)
        ended = self._turns.judge(read_words(heard.text, doubted=not heard.reliable))
        if ended is not None:
            await self._on_turn_event(ended)

    def _answer_ahead(self, utterance: _Utterance, heard: Transcript) -> None:
        """Begin the answer to what the caller said before the pause (`AnswerAhead`), unless
        a reply plays: what is said over it may be no question."""
        if not self._settings.turns.answer_ahead or not heard.text.strip():
            return
        if not self._handover.attendance.answering:
            return
        if utterance.overlapped or self._reply is not None:
            return
        question = f"{utterance.continues} {heard.text}".strip()
        utterance.ahead = AnswerAhead(
            question,
            len(self._memory),
            self._services.agent.answer(
                question, self._recent_memory(), heard_clearly=heard.reliable
            ),
            self._speaker.voice,
            self._spawn,
            clause_splitter(self._settings.call),
        )

    async def _continuation(self, at_ms: int) -> str:
        """Speech starting at `at_ms` within `turns.continuation_ms` of the last turn's end,
        while that turn's reply has only begun, goes on with the same question: the reply
        stops (not a barge-in) and its question is returned, to be joined with what comes.

        Both in the caller's audio and on the clock: push-to-talk sends no audio between
        presses, and a tester sends a recording's silences faster than they last."""
        reply = self._reply
        if reply is None or not reply.question or not self._goes_on(reply.turn, at_ms):
            return ""
        log.info("turn %d goes on: its reply stops and the question is joined", reply.turn)
        reply.continued = True
        await self._interrupt()
        return reply.question

    def _goes_on(self, turn: int, at_ms: int, at: float | None = None) -> bool:
        """Whether speech that began at `at_ms` in the caller's audio (and at `at` on the call's
        clock; now if None) began within `turns.continuation_ms` of the end of `turn`."""
        last = self._last_end
        if last is None or last[0] != turn:
            return False
        grace_s = self._settings.turns.continuation_ms / 1000
        since_s = (self._speaker.clock.now() if at is None else at) - last[2]
        return (at_ms - last[1]) / 1000 <= grace_s and since_s <= grace_s

    async def _answer_utterances(self) -> None:
        """Recognize and answer ended utterances one at a time, in the order they were said."""
        while True:
            utterance, ended, ended_at = await self._ended.get()
            try:
                await self._finish_utterance(utterance, ended, ended_at)
            except (CallClosed, asyncio.CancelledError):
                raise
            except WorkerDied as err:
                log.error("turn %d: speech recognition failed: %s", utterance.turn, err)
                await self._send(protocol.Error(code="asr_unavailable", message=FAILURE_SENTENCE))
                await self._apologize()
            except Exception as err:
                log.error("turn %d could not be recognized: %r", utterance.turn, err)
                sorry = self._settings.call.not_understood_message
                await self._send(protocol.Error(code="asr_failed", message=sorry))
                await self._say_sorry(sorry, utterance.turn)
            finally:
                self._unanswered -= 1
                self._work_done.set()
                utterance.drop_early()

    async def _finish_utterance(
        self, utterance: _Utterance, ended: TurnEnded, ended_at: float
    ) -> None:
        """Take the ended utterance as the next question, unless it overlapped a reply without
        interrupting it ("uh-huh") or holds no words."""
        turn = utterance.turn
        if not self._handover.attendance.answering:
            early, utterance.early = utterance.early, None
            heard = await early if early is not None else await self._transcribe(ended.audio)
            await self._handover.caller_said(turn, f"{utterance.continues} {heard.text}".strip())
            return
        if utterance.overlapped and not await self._interrupts(ended.audio, ended.speech_ms):
            await self._send(protocol.FinalTranscript(turn=turn, text="", ignored=True))
            return
        early, utterance.early = utterance.early, None
        heard = await early if early is not None else await self._transcribe(ended.audio)
        text = f"{utterance.continues} {heard.text}".strip()
        asr_ms = round((time.monotonic() - ended_at) * 1000)
        async with self._turn_lock:
            ignored = not text.strip()
            await self._send(protocol.FinalTranscript(turn=turn, text=text, ignored=ignored))
            if ignored:
                log.info("turn %d ignored: no words", turn)
                return
            follower = self._newest
            if (
                follower is not utterance
                and follower is not None
                and self._goes_on(turn, follower.began_ms, follower.began_at)
            ):
                # The caller went on before the answer began: one question, answered once.
                log.info("turn %d goes on in turn %d", turn, follower.turn)
                follower.continues = text
                return
            await self._interrupt()
            ahead, utterance.ahead = utterance.ahead, None
            if ahead is not None and not ahead.answers(text, len(self._memory)):
                ahead.cancel()
                ahead = None
            self._begin_reply(
                turn, text, ended_at, asr_ms, heard_clearly=heard.reliable, ahead=ahead
            )

    async def _interrupts(self, audio: np.ndarray, speech_ms: int) -> bool:
        """Whether speech over a reply interrupts it. Heard with an acknowledgement hint instead
        of the KB's words, which would turn "uh-huh" into "hub"."""
        result = await self._services.transcriber.transcribe(
            audio, hotwords=ACKNOWLEDGEMENT_HINT, language=self._start.language
        )
        log.debug("over the reply (%d ms): %r", speech_ms, result.text)
        return interrupts(result.text, speech_ms, self._settings.turns.barge_in_words_ms)

    def _maybe_partial(self, utterance: _Utterance) -> None:
        interval = self._settings.turns.partial_interval_ms
        if interval <= 0 or self._turns.speech_ms < self._partial_at:
            return
        self._partial_at = self._turns.speech_ms + interval
        busy = self._partial_task is not None and not self._partial_task.done()
        if busy or self._services.transcriber.busy:
            return
        self._partial_task = self._spawn(self._partial(utterance, self._turns.utterance()))

    async def _partial(self, utterance: _Utterance, audio: np.ndarray) -> None:
        # A final or barge-in check goes first; read once: the final transcript replaces it.
        heard = await self._transcribe(audio, urgent=False, once=True)
        text = heard.text
        if text and utterance is self._utterance:
            await self._send(protocol.PartialTranscript(turn=utterance.turn, text=text))

    def _maybe_check_barge_in(self, utterance: _Utterance) -> None:
        """While a reply plays, enough speech with real words in it interrupts the reply."""
        voiced_ms = self._turns.voiced_ms
        if not utterance.overlapped or self._reply is None or voiced_ms < self._barge_check_at:
            return
        if self._barge_task is not None and not self._barge_task.done():
            return
        self._barge_check_at = voiced_ms + self._settings.turns.barge_in_recheck_ms
        self._barge_task = self._spawn(
            self._check_barge_in(utterance, self._turns.utterance(), voiced_ms)
        )

    async def _check_barge_in(
        self, utterance: _Utterance, audio: np.ndarray, voiced_ms: int
    ) -> None:
        if not await self._interrupts(audio, voiced_ms):
            return
        async with self._turn_lock:
            if utterance.overlapped and self._reply is not None:
                log.info("barge-in on turn %d", utterance.turn)
                utterance.overlapped = False  # it is a question now, answered when it ends
                await self._interrupt()

    def _next_turn(self) -> int:
        self._last_turn += 1
        return self._last_turn

    async def _transcribe(
        self, audio: np.ndarray, urgent: bool = True, once: bool = False
    ) -> Transcript:
        return await self._services.transcriber.transcribe(
            audio,
            hotwords=self._services.hotwords or None,
            language=self._start.language,
            urgent=urgent,
            once=once,
        )

    # ------------------------------------------------------------ the reply

    def _begin_reply(
        self,
        turn: int,
        question: str,
        spoken_at: float,
        asr_ms: int | None = None,
        script: Script | None = None,
        heard_clearly: bool = True,
        ahead: AnswerAhead | None = None,
    ) -> None:
        """Answer `question` (or speak `script`: a supervisor's words, a keypad reply) as the
        reply of `turn`. `asr_ms`: how long recognition took (None: no listening was needed);
        `heard_clearly` False: recognition doubted the question's words; `ahead`: the answer,
        begun already."""
        reply = Reply(
            turn=turn,
            question=question,
            spoken_at=spoken_at,
            timings=Timings(asr=asr_ms),
            apology=script is not None and script.apology,
            ahead=ahead,
        )
        self._reply = reply
        reply.task = asyncio.create_task(self._run_reply(reply, script, heard_clearly))
        reply.task.add_done_callback(_log_failure)
        if ahead is not None:
            reply.task.add_done_callback(lambda _: ahead.cancel())

    async def _run_reply(self, reply: Reply, script: Script | None, heard_clearly: bool) -> None:
        clauses: asyncio.Queue[str | None] = asyncio.Queue(maxsize=16)
        failed = closed = died = False
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._write_answer(reply, clauses, script, heard_clearly))
                group.create_task(self._speaker.speak(reply, clauses))
        except* CallClosed:
            closed = True
        except* WorkerDied as deaths:
            died = True
            log.error(
                "reply to turn %d: speech synthesis failed: %s", reply.turn, deaths.exceptions[0]
            )
        except* Exception as failures:
            failed = True
            for failure in failures.exceptions:
                log.error("reply to turn %d failed: %r", reply.turn, failure)
        if closed:
            return
        sorry = self._settings.call.answer_failed_message
        if died:
            await self._send(protocol.Error(code="tts_unavailable", message=FAILURE_SENTENCE))
        elif failed:
            await self._send(protocol.Error(code="answer_failed", message=sorry))
        await self._finish_reply(reply, interrupted=False, cut_short=failed or died)
        if reply.apology:
            return  # an apology that failed is not apologized for
        if died:
            self._spawn(self._apologize())
        elif failed:
            self._spawn(self._say_sorry(sorry, reply.turn))

    async def _say_sorry(self, sentence: str, failed_turn: int) -> None:
        """A turn failed but the call goes on: after the error event, the caller hears why too
        (a phone line carries no text) — unless something newer is being said or asked by
        then, which answers the caller instead and is not interrupted for it."""
        if self._draining:
            return
        async with self._turn_lock:
            if self._reply is not None or self._last_turn != failed_turn:
                return
            script = Script.sorry(sentence)
            self._begin_reply(self._next_turn(), "", time.monotonic(), script=script)

    async def _apologize(self) -> None:
        """Part of the server failed this call (a model's worker died): say sorry and hand
        the call to a person; the worker is being restarted meanwhile."""
        await self._immediate_turn(
            script=Script.sorry(
                self._settings.call.failure_message, handoff=True, rules=(SERVER_FAILURE,)
            )
        )

    async def _write_answer(
        self,
        reply: Reply,
        clauses: asyncio.Queue[str | None],
        script: Script | None,
        heard_clearly: bool,
    ) -> None:
        splitter = clause_splitter(self._settings.call)
        if script is not None:
            answer = scripted(script)
        elif reply.ahead is not None:
            answer = reply.ahead.events()
        else:
            answer = self._services.agent.answer(
                reply.question, self._recent_memory(), heard_clearly=heard_clearly
            )
        async for event in answer:
            if isinstance(event, AnswerText):
                reply.wrote()
                reply.text.append(event.text)
                await self._send(protocol.ReplyText(turn=reply.turn, text=event.text))
                for clause in splitter.feed_written(event.text):
                    await clauses.put(clause)
            elif isinstance(event, AnswerEnd):
                reply.end = event
        for clause in splitter.flush():
            await clauses.put(clause)
        await clauses.put(None)

    async def _interrupt(self) -> None:
        """Barge-in: stop the reply, tell the caller to drop buffered audio, keep what was heard.

        If the task calling this is cancelled meanwhile, the cancellation goes on up."""
        reply = self._reply
        if reply is None or reply.task is None:
            return
        reply.stopped_at = self._speaker.clock.now()
        reply.task.cancel()
        await asyncio.wait({reply.task})
        self._observer.reply_cleared()
        if self._reply is reply:
            await self._send(protocol.Clear(turn=reply.turn))
            await self._finish_reply(reply, interrupted=True)

    async def _finish_reply(self, reply: Reply, interrupted: bool, cut_short: bool = False) -> None:
        """Send `reply.end` (and the handoff it asks for), unless the reply was finished already."""
        if self._reply is not reply:
            return
        end = self._end_reply(reply, interrupted, cut_short)
        await self._send(end)
        if end.handoff and not interrupted:
            await self._send(protocol.Handoff(by="assistant"))
            await self._wait_for_person(end.rules[0] if end.rules else "handoff")

    def _end_reply(
        self, reply: Reply, interrupted: bool, cut_short: bool = False
    ) -> protocol.ReplyEnd:
        """End the current reply: what the caller heard of it joins the call's memory; returns
        its `reply.end`. An interrupted reply was heard as far as its audio played (the rest
        was cleared); a failed one (`cut_short`) as far as its audio went, all of which plays."""
        self._reply = None
        self._work_done.set()
        text = "".join(reply.text).strip()
        if interrupted:
            heard = reply.heard(self._speaker.played_ms(reply))
        elif cut_short:
            heard = reply.heard(reply.sent_ms)
        else:
            heard = text
        if reply.question and not reply.continued:  # a continued question is asked again
            self._memory.append(Exchange(reply.question, heard, reply.end.rules, reply.end.sources))
        if text and not reply.apology and not reply.continued:  # what `*` repeats
            self._last_answer = text
        return protocol.ReplyEnd(
            turn=reply.turn,
            text=text,
            heard=heard,
            sources=list(reply.end.sources),
            handoff=reply.end.handoff,
            interrupted=interrupted,
            rules=list(reply.end.rules),
            timings_ms=reply.timings,
            backend=reply.end.backend,
            audio_ms=reply.sent_ms,
            continued=reply.continued,
            ahead=reply.ahead is not None,
        )

    # ------------------------------------------------------------ plumbing

    def _recent_memory(self) -> list[Exchange]:
        """What the agent is told of the call so far."""
        return self._memory[-self._settings.agent.memory_turns :]

    async def _send(self, event: protocol.Event) -> None:
        self._observer.event(event)
        await self._transport.send_event(event)

    def _spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task


def _log_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled() or isinstance(task.exception(), CallClosed):
        return
    if task.exception() is not None:
        log.error("call task failed: %r", task.exception())
