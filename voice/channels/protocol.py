"""The caller protocol, version 1 (docs/protocol.md): parsed once at the edge, without I/O.

Caller → server messages become `Start`, `TextQuestion`, `StopReply`, `KeyPress` or `HangUp`
(audio frames are checked by `check_audio_frame`); anything
else raises `ProtocolError` carrying the stable error code, a human sentence, and the close code
when the call cannot go on. Server → caller events are dataclasses turned into JSON by `encode`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from voice.channels.closes import CloseCode
from voice.channels.codecs import AudioFormat, CodecError

VERSION = 2
"""The newest version this server speaks. A caller names the version it speaks in its start
message (1 when it names none) and is answered in it: events added in a later version (their
`since`) are not sent to it. Version 2 added `hold` and `person.said` (a person takes the call)."""
VERSIONS = (1, 2)


class ProtocolError(Exception):
    """A caller message broke the protocol.

    Attributes:
        code: stable, machine-readable error code.
        close_code: the websocket close code when the call must end; None when it goes on.
    """

    def __init__(self, code: str, message: str, close_code: CloseCode | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


# ---------------------------------------------------------------- caller → server


@dataclass(frozen=True)
class Start:
    """The first message of a call."""

    audio: AudioFormat
    caller_id: str | None = None
    language: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    realtime_playback: bool = True
    """False: send reply audio as fast as it is made instead of at the pace it plays (testers)."""
    token: str | None = field(default=None, repr=False)
    """The caller's token, when the server asks for one (never logged or kept)."""
    version: int = 1
    """The protocol version the caller speaks (`VERSIONS`)."""


@dataclass(frozen=True)
class TextQuestion:
    """A typed question, answered as a turn without speech recognition."""

    text: str


@dataclass(frozen=True)
class StopReply:
    """The caller stops the reply now (a stop button, or push-to-talk pressed over the reply)."""


@dataclass(frozen=True)
class KeyPress:
    """A telephone keypad digit (DTMF) the caller pressed."""

    digit: str
    """One of 0-9, *, #, A-D."""


@dataclass(frozen=True)
class HangUp:
    """The caller ends the call."""


CallerMessage = TextQuestion | StopReply | KeyPress | HangUp

DIGITS = frozenset("0123456789*#ABCD")
"""The DTMF keys."""

_START_KEYS = {
    "type",
    "version",
    "audio",
    "caller_id",
    "language",
    "metadata",
    "options",
    "token",
}
_MAX_TEXT_CHARS = 2000
_LANGUAGE = re.compile(r"[a-z]{2,3}")


def parse_start(message: str | bytes) -> Start:
    """Parse the first message; every failure closes the call with `CloseCode.BAD_START`."""
    if isinstance(message, bytes):
        raise ProtocolError(
            "bad_start",
            "The first message must be the JSON start message, not audio.",
            CloseCode.BAD_START,
        )
    data = _json_object(message, CloseCode.BAD_START)
    if data.get("type") != "start":
        raise ProtocolError(
            "bad_start", 'The first message must have "type": "start".', CloseCode.BAD_START
        )
    version = data.get("version", 1)
    if type(version) is not int or version not in VERSIONS:
        raise ProtocolError(
            "unsupported_version",
            f"This server speaks protocol versions {VERSIONS[0]} to {VERSION}, not {version!r}.",
            CloseCode.BAD_START,
        )
    unknown = set(data) - _START_KEYS
    if unknown:
        raise ProtocolError(
            "bad_start", f"Unknown start fields: {', '.join(sorted(unknown))}.", CloseCode.BAD_START
        )
    audio = data.get("audio")
    if not isinstance(audio, dict):
        raise ProtocolError(
            "bad_start",
            'The start message needs "audio": {"encoding": ..., "sample_rate": ...}.',
            CloseCode.BAD_START,
        )
    try:
        audio_format = AudioFormat.parse(audio.get("encoding"), audio.get("sample_rate"))
    except CodecError as err:
        raise ProtocolError("unsupported_format", str(err), CloseCode.BAD_START) from err
    options = data.get("options", {})
    metadata = data.get("metadata", {})
    if not isinstance(options, dict) or not isinstance(metadata, dict):
        raise ProtocolError(
            "bad_start", '"options" and "metadata" must be JSON objects.', CloseCode.BAD_START
        )
    language = _optional_text(data, "language")
    if language is not None and not _LANGUAGE.fullmatch(language):
        raise ProtocolError(
            "bad_start", '"language" must be a language code such as "en".', CloseCode.BAD_START
        )
    return Start(
        audio=audio_format,
        caller_id=_optional_text(data, "caller_id"),
        language=language,
        metadata=metadata,
        realtime_playback=bool(options.get("realtime_playback", True)),
        token=_optional_text(data, "token"),
        version=version,
    )


def start_timed_out(timeout_s: float) -> ProtocolError:
    """The error of a caller (or carrier) that sent no start in time."""
    return ProtocolError(
        "start_timeout", f"No start message within {timeout_s:g} s.", CloseCode.START_TIMEOUT
    )


def parse_message(message: str) -> CallerMessage:
    """Parse a text message after the start; errors here leave the call going."""
    data = _json_object(message, None)
    kind = data.get("type")
    if kind == "text":
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError("bad_message", 'A "text" message needs a non-empty "text".')
        if len(text) > _MAX_TEXT_CHARS:
            raise ProtocolError(
                "bad_message", f"A typed question is limited to {_MAX_TEXT_CHARS} characters."
            )
        return TextQuestion(text.strip())
    if kind == "hangup":
        return HangUp()
    if kind == "stop":
        return StopReply()
    if kind == "dtmf":
        return KeyPress(parse_digit(data.get("digit")))
    if kind == "start":
        raise ProtocolError("bad_message", "The call has already started.")
    raise ProtocolError("unknown_type", f"Unknown message type {kind!r}.")


def parse_digit(digit: object) -> str:
    """A keypad digit as sent by a caller or a carrier; the call goes on when it is bad."""
    if not isinstance(digit, str) or digit.upper() not in DIGITS or len(digit) != 1:
        raise ProtocolError("bad_message", 'A "dtmf" message needs one "digit": 0-9, *, # or A-D.')
    return digit.upper()


def check_audio_frame(data: bytes, audio: AudioFormat, max_frame_ms: int) -> None:
    """Reject audio the server will not take; the frame is dropped and the call goes on."""
    if len(data) % audio.bytes_per_sample:
        raise ProtocolError(
            "odd_length_audio",
            f"Audio frames must hold whole {audio.bytes_per_sample * 8}-bit samples; "
            f"got {len(data)} bytes.",
        )
    duration = audio.duration_ms(len(data))
    if duration > max_frame_ms:
        raise ProtocolError(
            "frame_too_long",
            f"Audio frames may hold at most {max_frame_ms} ms; got {duration:.0f} ms.",
        )


def _json_object(message: str, close_code: CloseCode | None) -> dict[str, Any]:
    code = "bad_start" if close_code else "bad_message"
    try:
        data = json.loads(message)
        # JSON can escape a lone surrogate ("\\ud800"): not Unicode, so neither the records
        # (SQLite) nor a websocket text frame could carry it on.
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ProtocolError(
            code, "Text messages must not hold lone surrogates such as \\ud800.", close_code
        ) from None
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        raise ProtocolError(
            code, "Text messages must be JSON objects; audio goes in binary frames.", close_code
        ) from None
    if not isinstance(data, dict):
        raise ProtocolError(code, "Text messages must be JSON objects.", close_code)
    return data


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("bad_start", f'"{key}" must be a string.', CloseCode.BAD_START)
    return value


# ---------------------------------------------------------------- server → caller


@dataclass(frozen=True)
class Event:
    type: ClassVar[str]
    since: ClassVar[int] = 1
    """The protocol version that added it: a caller speaking an older one is not sent it."""


@dataclass(frozen=True)
class Ready(Event):
    type: ClassVar[str] = "ready"
    call_id: str
    version: int
    audio: dict[str, Any]
    """The caller's own format, which reply audio uses too."""
    feedback_token: str = ""
    """Sent with `POST /api/feedback` for a turn of this call."""


@dataclass(frozen=True)
class SpeechStarted(Event):
    type: ClassVar[str] = "speech.started"
    turn: int
    at_ms: int
    """Position in the caller's audio stream, ms since the first frame."""


@dataclass(frozen=True)
class SpeechStopped(Event):
    type: ClassVar[str] = "speech.stopped"
    turn: int
    at_ms: int
    """Position in the caller's audio stream where the turn was found to be over."""
    reason: str = "silence"
    """"silence", or "max_length" when the turn hit the maximum utterance."""


@dataclass(frozen=True)
class PartialTranscript(Event):
    type: ClassVar[str] = "transcript.partial"
    turn: int
    text: str


@dataclass(frozen=True)
class FinalTranscript(Event):
    type: ClassVar[str] = "transcript.final"
    turn: int
    text: str
    ignored: bool = False
    """True when the utterance was not taken as a question (an acknowledgement during a reply,
    or no words)."""


@dataclass(frozen=True)
class ReplyText(Event):
    type: ClassVar[str] = "reply.text"
    turn: int
    text: str
    """The next piece of the reply; pieces concatenate to the reply."""


@dataclass(frozen=True)
class Timings:
    """How soon a turn's reply got going, in ms from the detected end of the caller's speech
    (or from a typed question, a keypad digit, a supervisor's words); None: it did not happen."""

    asr: int | None = None
    """The transcript was ready (None for a turn that needed no listening)."""
    first_text: int | None = None
    """The answer's first words were written."""
    first_audio: int | None = None
    """The reply's first audio was sent."""


@dataclass(frozen=True)
class ReplyEnd(Event):
    type: ClassVar[str] = "reply.end"
    turn: int
    text: str
    """The whole reply as written."""
    heard: str
    """The part of the reply the caller was sent before any interruption."""
    sources: list[str]
    handoff: bool
    interrupted: bool
    rules: list[str]
    timings_ms: Timings
    """Sent as a JSON object: {"asr", "first_text", "first_audio"}."""
    backend: str = ""
    """What wrote the reply: "faq", "extractive", "ollama", "guardrail", "supervisor", "keypad"
    or "apology"."""
    audio_ms: int = 0
    """Reply audio sent for this turn, in ms (what a caller that lost none received)."""
    continued: bool = False
    """The caller went on with their question just after the turn ended: this reply stopped
    (`interrupted` too) and the question, joined with what came next, is answered in the next
    turn. Not a barge-in."""
    ahead: bool = False
    """The answer was begun in the pause, before the turn was known to be over, on the same
    words (`turns.answer_ahead`)."""


@dataclass(frozen=True)
class Handoff(Event):
    type: ClassVar[str] = "handoff"
    by: str
    """"assistant" (the reply handed off) or "supervisor" (a person took the call over)."""


@dataclass(frozen=True)
class Hold(Event):
    """Who the caller is with, once the call was handed off (docs/protocol.md, "A person
    takes the call")."""

    type: ClassVar[str] = "hold"
    since: ClassVar[int] = 2
    state: str
    """"waiting" (in the handoff queue: hold audio plays), "person" (`name` holds the call
    and speaks to the caller), "assistant" (handed back by `name`: the assistant answers
    again) or "missed" (nobody took the call in time)."""
    name: str = ""
    """The supervisor who took the call or handed it back."""
    reason: str = ""
    """Why the call was handed off ("waiting"): the guardrail rule, "supervisor", "handoff"."""
    at: float = 0.0
    """Unix time, seconds."""


@dataclass(frozen=True)
class PersonSaid(Event):
    """What the person holding the call said, as recognized from their speech."""

    type: ClassVar[str] = "person.said"
    since: ClassVar[int] = 2
    turn: int
    name: str
    text: str


@dataclass(frozen=True)
class Clear(Event):
    type: ClassVar[str] = "clear"
    turn: int
    """Stop playing the reply audio of this turn now and drop what is buffered."""


@dataclass(frozen=True)
class Error(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str
    fatal: bool = False


@dataclass(frozen=True)
class End(Event):
    type: ClassVar[str] = "end"
    reason: str
    """"hangup", "error", "server_shutdown" ..."""


def encode(event: Event) -> str:
    """The JSON text of a server event."""
    return json.dumps({"type": event.type, **dataclasses.asdict(event)}, ensure_ascii=False)
