"""One call watched: its events to the live console, its turns to the store, its audio to a WAV."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voice.channels import protocol
from voice.channels.codecs import StreamResampler, int16_to_float
from voice.office.live import LiveHub
from voice.office.records import CallAction, CallRecord, Store, TurnRecord

log = logging.getLogger(__name__)

RECORDING_RATE = 16_000
_REDACTED_FIELDS = ("text", "heard")
_ACTIONS = {"waiting": "waiting", "person": "taken", "assistant": "handed_back", "missed": "missed"}
"""A `hold` event's state → the action kept in the call's record."""
PERSON = "person"
"""The backend of a turn said by a person holding the call, or said to them by the caller."""
_HELD = ("waiting", "person")
"""While the call is in these states, what the caller says is kept at once, with no reply."""
CONTINUED = "continued"
"""Recorded among a turn's rules when the caller went on with the question (`reply.end`
`continued`): its reply stopped, and the whole question is the next turn."""


class CallMonitor:
    """Implements `CallObserver` for one call. Never blocks and never raises into the call:
    the store it writes to spools, and a failing recording is given up with a logged error."""

    def __init__(
        self,
        call: CallRecord,
        hub: LiveHub,
        store: Store | None,
        recordings_dir: Path | None,
        caller_rate: int,
        redact: Callable[[str], str] | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.call = call
        self._hub = hub
        self._store = store
        self._redact = redact
        self._clock = clock
        self._questions: dict[int, tuple[str, float]] = {}
        self._hold_state = "assistant"
        self._recorder: Any = None
        self._recording_name: str | None = None
        self._reply_resampler = StreamResampler(caller_rate, RECORDING_RATE)
        if recordings_dir is not None:
            self._open_recording(recordings_dir)

    @property
    def call_id(self) -> str:
        return self.call.call_id

    def started(self) -> None:
        if self._store is not None:
            self._store.start_call(self.call)
        self._hub.publish(
            {
                "type": "call.started",
                "call_id": self.call_id,
                "channel": self.call.channel,
                "caller_id": self.call.caller_id,
                "at": self.call.started_at,
            }
        )

    def ended(self, reason: str) -> None:
        """The call is over. A question heard whose reply never began (the caller hung up in
        between) is kept as a turn with no reply: every question shown live is recorded."""
        if self._recorder is not None:
            self._guard_recording(self._recorder.close)
        ended_at = self._clock()
        self.unanswered()
        if self._store is not None:
            self._store.end_call(self.call_id, ended_at, reason, self._recording_name)
        self._hub.publish(
            {"type": "call.ended", "call_id": self.call_id, "reason": reason, "at": ended_at}
        )

    def unanswered(self) -> None:
        """Keep each question heard whose reply never began as a turn with no reply."""
        if self._store is not None:
            for turn, (question, at) in sorted(self._questions.items()):
                self._store.add_turn(TurnRecord(self.call_id, turn, at, question, reply=""))
        self._questions.clear()

    # ------------------------------------------------------------ CallObserver

    def event(self, event: protocol.Event) -> None:
        fields = dataclasses.asdict(event)
        if self._redact is not None:
            for name in _REDACTED_FIELDS:
                if isinstance(fields.get(name), str):
                    fields[name] = self._redact(fields[name])
        if isinstance(event, protocol.FinalTranscript) and not event.ignored:
            if self._hold_state in _HELD:
                self._add_turn(
                    TurnRecord(
                        self.call_id,
                        event.turn,
                        self._clock(),
                        fields["text"],
                        reply="",
                        backend=PERSON,
                    )
                )
            else:
                self._questions[event.turn] = (fields["text"], self._clock())
        elif isinstance(event, protocol.ReplyEnd):
            self._record_turn(event, fields)
        elif isinstance(event, protocol.PersonSaid):
            self._add_turn(
                TurnRecord(
                    self.call_id, event.turn, self._clock(), "", fields["text"], backend=PERSON
                )
            )
        elif isinstance(event, protocol.Hold):
            self._hold_state = event.state
            self.action(_ACTIONS[event.state], event.name, event.reason)
        self._hub.publish({"type": event.type, "call_id": self.call_id, **fields})

    def redacted(self, text: str) -> str:
        """`text` as the records keep it (redacted when redaction is on)."""
        return text if self._redact is None else self._redact(text)

    def action(self, action: str, by: str = "", detail: str = "") -> None:
        """Keep an action on the call (`CallAction`) in its record."""
        if self._store is not None:
            self._store.add_action(CallAction(self.call_id, self._clock(), action, by, detail))

    def caller_audio(self, samples: np.ndarray) -> None:
        if self._recorder is not None:
            self._guard_recording(self._recorder.caller, samples)

    def reply_audio(self, samples: np.ndarray) -> None:
        if self._recorder is not None:
            audio = self._reply_resampler.process(int16_to_float(samples))
            self._guard_recording(self._recorder.assistant, audio)

    def reply_cleared(self) -> None:
        if self._recorder is not None:
            self._guard_recording(self._recorder.clear_after, None)

    # ------------------------------------------------------------ helpers

    def _add_turn(self, turn: TurnRecord) -> None:
        if self._store is not None:
            self._store.add_turn(turn)

    def _record_turn(self, event: protocol.ReplyEnd, fields: dict[str, Any]) -> None:
        question, at = self._questions.pop(event.turn, ("", self._clock()))
        if self._store is None:
            return
        self._store.add_turn(
            TurnRecord(
                call_id=self.call_id,
                turn=event.turn,
                at=at,
                question=question,
                reply=fields["heard"],
                sources=tuple(event.sources),
                handoff=event.handoff,
                rules=(*event.rules, CONTINUED) if event.continued else tuple(event.rules),
                barge_in=event.interrupted and not event.continued,
                timings_ms=fields["timings_ms"],
                backend=event.backend,
            )
        )

    def _open_recording(self, recordings_dir: Path) -> None:
        from voice.office.recording import CallRecorder

        name = f"{self.call_id}.wav"
        try:
            recordings_dir.mkdir(parents=True, exist_ok=True)
            self._recorder = CallRecorder(recordings_dir / name, sample_rate=RECORDING_RATE)
            self._recording_name = name
        except OSError as err:
            log.error("call %s: cannot record (%s); the call goes on", self.call_id, err)

    def _guard_recording(self, action: Callable[..., None], *args: Any) -> None:
        """Run a recorder's `action`; if it fails, the recording is given up: the call's record
        names none, and what was written of it is deleted."""
        try:
            action(*args)
        except OSError as err:
            log.error("call %s: recording stopped (%s); the call goes on", self.call_id, err)
            path = getattr(self._recorder, "path", None)
            self._recorder, self._recording_name = None, None
            if isinstance(path, Path):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
