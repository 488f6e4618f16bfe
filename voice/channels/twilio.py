"""The Twilio Media Streams dialect (docs/phone.md), parsed and written without I/O.

A carrier — Twilio's `<Connect><Stream>`, or a gateway that imitates it — sends JSON text
messages: `connected`, `start`, then `media` (base64 G.711 μ-law, 8 kHz, about 20 ms each),
`dtmf` and `mark` while the call lasts, and `stop`. `CarrierStream` checks their order and turns
each into a typed message; a message that breaks the dialect raises `ProtocolError` with
`CloseCode.CARRIER`, and the call is closed. The server writes back `media`, `mark` and `clear`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from voice.channels.closes import CloseCode
from voice.channels.codecs import AudioFormat
from voice.channels.protocol import ProtocolError, parse_digit

PHONE_AUDIO = AudioFormat("mulaw", 8000)
"""The only audio Media Streams carry, both ways."""

SIGNATURE_HEADER = "X-Twilio-Signature"


@dataclass(frozen=True)
class Connected:
    """The first message: the carrier says which protocol follows."""

    protocol: str
    version: str


@dataclass(frozen=True)
class StreamStart:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)
    """The `<Parameter>` nouns of the `<Stream>`, e.g. the caller's number."""
    tracks: tuple[str, ...] = ("inbound",)


@dataclass(frozen=True)
class Media:
    audio: bytes
    """The caller's audio, G.711 μ-law bytes (decoded from the base64 payload)."""
    track: str = "inbound"


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Mark:
    """A mark the server sent, echoed back once the audio before it has played (or was
    cleared: a `clear` makes the carrier echo every mark still pending)."""

    name: str


@dataclass(frozen=True)
class Stop:
    """The stream is over: the caller hung up, or the carrier's call flow moved on."""


CarrierMessage = Connected | StreamStart | Media | Dtmf | Mark | Stop


class CarrierStream:
    """Reads one carrier's messages in order. One per connection; no I/O."""

    def __init__(self) -> None:
        self.stream_sid: str | None = None
        """Set by the start message."""
        self.connected = False
        self.stopped = False

    def receive(self, message: str | bytes) -> CarrierMessage:
        """The typed message; raises ProtocolError (close code `CloseCode.CARRIER`) when the
        carrier breaks the dialect, whatever the reason."""
        if self.stopped:
            raise _broken("after_stop", "A message came after stop.")
        data = _json_object(message)
        event = data.get("event")
        if event == "connected":
            if self.stream_sid is not None or self.connected:
                raise _broken("bad_order", "A second connected message, or one after start.")
            self.connected = True
            return Connected(str(data.get("protocol", "")), str(data.get("version", "")))
        if event == "start":
            return self._start(data)
        if event not in ("media", "dtmf", "mark", "stop"):
            raise _broken("unknown_event", f"Unknown Media Streams event {event!r}.")
        if self.stream_sid is None:
            raise _broken("before_start", f"A {event} message came before start.")
        if data.get("streamSid", self.stream_sid) != self.stream_sid:
            raise _broken("wrong_stream", f"A {event} message named another streamSid.")
        if event == "media":
            return _media(_object(data, "media"))
        if event == "dtmf":
            try:
                return Dtmf(parse_digit(_object(data, "dtmf").get("digit")))
            except ProtocolError as err:
                raise _broken("bad_dtmf", err.message) from None
        if event == "mark":
            name = _object(data, "mark").get("name")
            if not isinstance(name, str):
                raise _broken("bad_mark", "A mark message needs a mark name.")
            return Mark(name)
        self.stopped = True
        return Stop()

    def _start(self, data: dict[str, Any]) -> StreamStart:
        if self.stream_sid is not None:
            raise _broken("bad_order", "A second start message came.")
        start = _object(data, "start")
        stream_sid = start.get("streamSid", data.get("streamSid"))
        if not isinstance(stream_sid, str) or not stream_sid:
            raise _broken("bad_start", "The start message needs a streamSid.")
        media_format = start.get("mediaFormat", {})
        if not isinstance(media_format, dict) or (
            media_format.get("encoding"),
            media_format.get("sampleRate"),
            media_format.get("channels", 1),
        ) != ("audio/x-mulaw", 8000, 1):
            raise _broken(
                "unsupported_format",
                f"Media Streams audio must be audio/x-mulaw, 8000 Hz, mono; got {media_format!r}.",
            )
        parameters = start.get("customParameters") or {}
        if not isinstance(parameters, dict):
            raise _broken("bad_start", "customParameters must be an object.")
        tracks = start.get("tracks") or ["inbound"]
        if not isinstance(tracks, list):
            raise _broken("bad_start", "tracks must be a list.")
        self.stream_sid = stream_sid
        return StreamStart(
            stream_sid=stream_sid,
            call_sid=str(start.get("callSid", "")),
            account_sid=str(start.get("accountSid", "")),
            custom_parameters={str(k): str(v) for k, v in parameters.items()},
            tracks=tuple(str(track) for track in tracks),
        )


def _media(media: dict[str, Any]) -> Media:
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise _broken("bad_media", "A media message needs a base64 payload.")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _broken("bad_base64", "A media payload is not valid base64.") from None
    return Media(audio=audio, track=str(media.get("track", "inbound")))


def _json_object(message: str | bytes) -> dict[str, Any]:
    if isinstance(message, bytes):
        raise _broken("binary_frame", "Media Streams messages are JSON text, not binary.")
    try:
        data = json.loads(message)
        # JSON can escape a lone surrogate ("\\ud800"): not Unicode, so the records (SQLite)
        # could not keep it.
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise _broken("bad_json", "A Media Streams message holds a lone surrogate.") from None
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        raise _broken("bad_json", "A Media Streams message is not JSON.") from None
    if not isinstance(data, dict):
        raise _broken("bad_json", "A Media Streams message is not a JSON object.")
    return data


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _broken(f"bad_{data.get('event')}", f'A {data.get("event")} message needs "{key}".')
    return value


def _broken(code: str, message: str) -> ProtocolError:
    return ProtocolError(f"carrier_{code}", message, CloseCode.CARRIER)


# ---------------------------------------------------------------- server → carrier


def media(stream_sid: str, audio: bytes) -> str:
    """Audio for the caller to hear: G.711 μ-law bytes, 8 kHz."""
    payload = base64.b64encode(audio).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark(stream_sid: str, name: str) -> str:
    """Ask to have `name` echoed once the audio sent before it has played."""
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear(stream_sid: str) -> str:
    """Drop the audio the carrier still holds; it echoes the pending marks at once."""
    return json.dumps({"event": "clear", "streamSid": stream_sid})


# ---------------------------------------------------------------- request signatures


def signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """Twilio's request signature: base64 HMAC-SHA1, keyed by the account's auth token, of the
    URL followed by the POST parameters sorted by name, each name then its value. A websocket
    upgrade is a GET: the URL alone."""
    fields = params or {}
    data = url + "".join(name + fields[name] for name in sorted(fields))
    # surrogatepass: aiohttp decodes a Host header that is not UTF-8 into surrogates; such a
    # URL must fail to match, not raise.
    key, message = (text.encode(errors="surrogatepass") for text in (auth_token, data))
    digest = hmac.new(key, message, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_valid(auth_token: str, urls: Iterable[str], given: str | None) -> bool:
    """Whether `given` signs one of `urls`: as written, or with or without the default port
    written out, as Twilio's own validators accept. Constant-time in the signature."""
    if not given or not given.isascii():  # compare_digest takes no other str; never valid
        return False
    candidates = {variant for url in urls for variant in (url, *_port_variants(url))}
    return any(hmac.compare_digest(signature(auth_token, url), given) for url in candidates)


def _port_variants(url: str) -> tuple[str, ...]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # e.g. a Host header "[::1" or "host:99999": no variants
        return ()
    default = {"https": 443, "wss": 443, "http": 80, "ws": 80}.get(parts.scheme)
    if port is not None and port != default:
        return ()
    # As written: .hostname would lowercase the host and drop an IPv6 address's brackets.
    host = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    bare = urlunsplit(parts._replace(netloc=host))
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{default}")) if default else bare
    return (bare, with_port)
