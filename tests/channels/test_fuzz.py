"""Fuzzing the edges that read what callers and carriers send: the caller protocol, the Twilio
dialect and the audio codecs. Every input either parses or fails with a documented error —
never with a stray TypeError, KeyError or RecursionError, which would end a call as an
internal error. Bounded (explicit `max_examples`, no example database) to run in seconds.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.channels import test_twilio
from voice.channels import protocol, twilio
from voice.channels.closes import CloseCode
from voice.channels.codecs import (
    SUPPORTED_RATES,
    AudioFormat,
    CodecError,
    StreamResampler,
    float_to_int16,
    mulaw_decode,
    mulaw_encode,
    pcm16_decode,
    pcm16_encode,
    resample,
)
from voice.channels.protocol import ProtocolError

DOCS = Path(__file__).resolve().parents[2] / "docs"


def fuzz(examples: int) -> Any:
    """Hypothesis settings for one property: bounded by `examples`, and so without a deadline
    or the too-slow health check, which a busy 2-core machine fails at random; no example
    database written into the checkout."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


# ------------------------------------------------------------------ the documented error codes


def _error_rows(doc: str) -> list[list[str]]:
    """The table rows of the "Errors and close codes" section of a doc, split into cells."""
    text = (DOCS / doc).read_text()
    section = text.split("## Errors and close codes", 1)[1].split("\n## ", 1)[0]
    return [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]


def _codes(cell: str) -> set[str]:
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", cell))


_PROTOCOL_ROWS = _error_rows("protocol.md")
CALL_GOES_ON = frozenset(code for row in _PROTOCOL_ROWS for code in _codes(row[0]))
"""The first table of docs/protocol.md: errors that leave the call going."""
START_CLOSES = frozenset(
    code
    for row in _PROTOCOL_ROWS
    if row[0].strip() == str(CloseCode.BAD_START.value)
    for code in _codes(row[1])
)
"""The 4400 row of docs/protocol.md: what a bad first message is told."""
CARRIER_CODES = frozenset(
    code
    for row in _error_rows("phone.md")
    if row[0].strip() == str(CloseCode.CARRIER.value)
    for code in _codes(row[1])
)
"""The 4422 row of docs/phone.md: the codes a carrier that broke the dialect is logged with."""


def test_the_documented_codes_were_found():
    assert {"odd_length_audio", "frame_too_long", "bad_message", "unknown_type"} <= CALL_GOES_ON
    assert {"bad_start", "unsupported_version", "unsupported_format"} <= START_CLOSES
    assert {"carrier_bad_json", "carrier_after_stop", "carrier_before_start"} <= CARRIER_CODES


def assert_documented(err: ProtocolError, codes: frozenset[str], close_code: int | None) -> None:
    assert err.code in codes, f"undocumented error code {err.code!r}"
    assert err.close_code == close_code
    assert isinstance(err.message, str)
    assert err.message.strip() and err.message.endswith("."), err.message
    assert str(err) == err.message
    err.message.encode()  # it goes to the caller in a text frame


def assert_unicode(value: object) -> None:
    """Everything parsed travels on as UTF-8 (records, events, logs): no lone surrogate."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    json.dumps(value, ensure_ascii=False).encode()


# ------------------------------------------------------------------ JSON, whole and mutated


@dataclasses.dataclass(frozen=True)
class Raw:
    """A JSON token written as is: numbers and strings `json.dumps` will not write."""

    token: str


DEEP = "[" * 12_000 + "]" * 12_000
"""Nested past any recursion limit (hypothesis sets it to the stack depth + 2,000 while it
runs), and under the 30 kB past which hypothesis warns about the size of a failing example."""

RAW_TOKENS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "123456789012345678901234567890",
    "9" * 5000,  # over Python's 4,300-digit int limit: json.loads raises ValueError
    '"\\ud800"',  # a lone surrogate
    '"\\udfff tail"',
    '"\\ud83d\\ude00"',  # a proper pair: 😀
    '"\\u0000"',
    DEEP,  # deeper than Python recurses
    "[" * 200 + "]" * 200,
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.text(st.characters(codec=None, categories=["Cs", "Co", "Cc", "Zs", "L"]), max_size=8)
    | st.sampled_from(RAW_TOKENS).map(Raw)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)


def to_json(value: object) -> str:
    """JSON text of `value`, with `Raw` leaves written as their token."""
    if isinstance(value, Raw):
        return value.token
    if isinstance(value, list):
        return "[" + ", ".join(to_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {to_json(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _slots(value: object) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in a message tree, outermost first."""
    slots: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            slots.append((value, key))
            slots.extend(_slots(item))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            slots.append((value, index))
            slots.extend(_slots(item))
    return slots


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], near: st.SearchStrategy[object]) -> str:
    """`base` (a real message) with a few fields deleted, replaced or added (values from
    `near`, or any JSON), as JSON text."""
    message = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        slots = _slots(message)
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["delete", "replace", "replace", "add"]))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = copy.deepcopy(draw(near | json_values))
        else:
            target = draw(
                st.sampled_from([message] + [s[0] for s in slots if isinstance(s[0], dict)])
            )
            name = draw(st.sampled_from(sorted(_names(base))) | st.text(max_size=10))
            target[name] = copy.deepcopy(draw(near | json_values))
        if not _slots(message):
            break
    return to_json(message)


def _names(value: object) -> set[str]:
    return {key for container, key in _slots(value) if isinstance(container, dict)}


# ------------------------------------------------------------------ the caller protocol

START = {
    "type": "start",
    "version": 1,
    "audio": {"encoding": "pcm16", "sample_rate": 16000},
    "caller_id": "+15550100",
    "language": "en",
    "metadata": {"kiosk": "lobby-2", "nested": [1, {"a": None}]},
    "options": {"realtime_playback": True},
}
CALLER_MESSAGES = [
    {"type": "text", "text": "What is your return policy?"},
    {"type": "stop"},
    {"type": "dtmf", "digit": "0"},
    {"type": "hangup"},
    START,
]
# fmt: off
NEAR_CALLER: list[object] = [
    "start", "text", "dtmf", "stop", "hangup", "pcm16", "mulaw", "PCM16", "", 8000, 16000,
    24000, 48000, 44100, 8000.0, 16000.5, 0, -16000, "16000", True, False, 1, 2, 1.0, "1", None,
    "en", "EN", "eng", "e", " en", "en-US", "zh", "0", "*", "#", "a", "D", "E", "00", "٣", "ß",
    " ", "\u200b", "ａ", "x" * 2001, " " * 3000, [], {}, {"realtime_playback": False},
    {"realtime_playback": "no"}, {"encoding": "mulaw"}, {"encoding": "mulaw", "sample_rate": 8000},
    Raw('"\\ud800"'), Raw("NaN"), Raw("1e400"),
]
# fmt: on
"""Values near the valid ones, which reach deeper into the parser than random JSON."""
near_caller = st.sampled_from(NEAR_CALLER)
any_text = st.text(max_size=60) | st.text(st.characters(codec=None), max_size=20)


def check_start(message: str | bytes) -> None:
    try:
        start = protocol.parse_start(message)
    except ProtocolError as err:
        assert_documented(err, START_CLOSES, CloseCode.BAD_START)
        return
    assert isinstance(start, protocol.Start)
    assert start.audio.sample_rate in SUPPORTED_RATES[start.audio.encoding]
    assert start.caller_id is None or isinstance(start.caller_id, str)
    assert start.language is None or re.fullmatch(r"[a-z]{2,3}", start.language)
    assert isinstance(start.metadata, dict)
    assert isinstance(start.realtime_playback, bool)
    assert_unicode(start)


@fuzz(150)
@given(mutated(START, near_caller))
@example(to_json({**START, "caller_id": Raw('"\\ud800"')}))  # stored in SQLite: refused
@example(to_json({**START, "\udc80": 1}))  # a field name the error sentence would name
@example('{"type": "start", "metadata": ' + DEEP + "}")  # RecursionError from json.loads
@example("[" * 100_000)  # RecursionError from json.loads
@example(to_json({**START, "audio": {"encoding": "pcm16", "sample_rate": Raw("9" * 5000)}}))
def test_start_messages_mutated(message):
    check_start(message)


@fuzz(100)
@given(json_values.map(to_json) | any_text | st.binary(max_size=64))
@example(b"")
@example("")
@example('{"type": "start", "audio": {"encoding": "pcm16", "sample_rate": 16000}}')
def test_start_anything(message):
    check_start(message)


def check_message(message: str) -> None:
    try:
        parsed = protocol.parse_message(message)
    except ProtocolError as err:
        assert_documented(err, CALL_GOES_ON, None)
        return
    assert isinstance(
        parsed, protocol.TextQuestion | protocol.StopReply | protocol.KeyPress | protocol.HangUp
    )
    if isinstance(parsed, protocol.TextQuestion):
        assert parsed.text and parsed.text == parsed.text.strip() and len(parsed.text) <= 2000
    if isinstance(parsed, protocol.KeyPress):
        assert parsed.digit in protocol.DIGITS
    assert_unicode(parsed)


@fuzz(150)
@given(st.sampled_from(CALLER_MESSAGES).flatmap(lambda base: mutated(base, near_caller)))
@example('{"type": "text", "text": "\\ud800"}')  # a lone surrogate would break SQLite later
@example('{"type": ' + DEEP + "}")  # RecursionError from json.loads
@example("[" * 100_000)
def test_caller_messages_mutated(message):
    check_message(message)


@fuzz(100)
@given(json_values.map(to_json) | any_text)
def test_caller_messages_anything(message):
    check_message(message)


@fuzz(100)
@given(json_values | st.characters(codec=None) | st.text(max_size=3) | st.binary(max_size=2))
@example("a")
@example("ß")  # upper() is "SS"
@example("0\n")
def test_parse_digit_takes_any_value(digit):
    try:
        parsed = protocol.parse_digit(digit)
    except ProtocolError as err:
        assert_documented(err, CALL_GOES_ON, None)
        assert err.code == "bad_message"
        return
    assert isinstance(digit, str) and parsed == digit.upper() and parsed in protocol.DIGITS


FORMATS = [
    AudioFormat(encoding, rate)  # type: ignore[arg-type]
    for encoding, rates in SUPPORTED_RATES.items()
    for rate in rates
]


@fuzz(150)
@given(
    st.binary(max_size=20_000),
    st.sampled_from(FORMATS),
    st.integers(min_value=-(2**63), max_value=2**63) | st.sampled_from([0, 10, 100]),
)
def test_audio_frames_of_any_bytes(data, audio, max_frame_ms):
    try:
        protocol.check_audio_frame(data, audio, max_frame_ms)
    except ProtocolError as err:
        assert_documented(err, CALL_GOES_ON, None)
        if err.code == "odd_length_audio":
            assert audio.encoding == "pcm16" and len(data) % 2
        else:
            assert err.code == "frame_too_long"
            assert audio.duration_ms(len(data)) > max_frame_ms
        return
    assert len(data) % audio.bytes_per_sample == 0
    assert audio.duration_ms(len(data)) <= max_frame_ms


# ------------------------------------------------------------------ the Twilio dialect

SID = test_twilio.SID
T_CONNECTED, T_START = test_twilio.CONNECTED, test_twilio.START
T_MEDIA = {
    "event": "media",
    "sequenceNumber": "3",
    "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "//////8="},
    "streamSid": SID,
}
T_DTMF = {"event": "dtmf", "streamSid": SID, "sequenceNumber": "5", "dtmf": {"digit": "0"}}
T_MARK = {"event": "mark", "streamSid": SID, "sequenceNumber": "6", "mark": {"name": "1:40"}}
T_STOP = {"event": "stop", "streamSid": SID, "sequenceNumber": "7", "stop": {"callSid": "CA123"}}
CARRIER_MESSAGES = [T_CONNECTED, T_START, T_MEDIA, T_DTMF, T_MARK, T_STOP]
# fmt: off
NEAR_CARRIER: list[object] = [
    "connected", "start", "media", "dtmf", "mark", "stop", "clear", "inbound", "outbound", SID,
    "MZother", "", "audio/x-mulaw", "audio/x-alaw", "audio/l16", 8000, 8000.0, 16000, 1, 2, True,
    "8000", None, "AAAA", "AA==AA", "@@@@", "é", "////", "=", "0", "*", "Z", "ab", 5, [], {},
    ["inbound", "outbound"], ["inbound", 3], {"x": [1]},
    base64.b64encode(bytes(range(256))).decode(), Raw('"\\ud800"'), Raw("NaN"),
]
# fmt: on
near_carrier = st.sampled_from(NEAR_CARRIER)
real_carrier_message = st.sampled_from(CARRIER_MESSAGES).map(to_json)
carrier_message = (
    real_carrier_message
    | st.sampled_from(CARRIER_MESSAGES).flatmap(lambda base: mutated(base, near_carrier))
    | json_values.map(to_json)
    | any_text
    | st.binary(max_size=16)
)


def carrier_sequences(message: st.SearchStrategy[str | bytes], size: int) -> Any:
    """Lists of messages, most of them after a proper start, so that what comes after start
    is fuzzed as much as what comes before."""
    head = st.sampled_from([[], [T_START], [T_CONNECTED, T_START]])
    return st.builds(
        list.__add__,
        head.map(lambda messages: [to_json(m) for m in messages]),
        st.lists(message, max_size=size),
    )


CARRIER_TYPES = (
    twilio.Connected,
    twilio.StreamStart,
    twilio.Media,
    twilio.Dtmf,
    twilio.Mark,
    twilio.Stop,
)


def play(messages: list[str | bytes]) -> None:
    """Feed one stream `messages` in order, checking each outcome against a model of the
    dialect's order: nothing but connected before start, nothing at all after stop."""
    stream = twilio.CarrierStream()
    started = stopped = False
    for message in messages:
        try:
            parsed = stream.receive(message)
        except ProtocolError as err:
            assert_documented(err, CARRIER_CODES, CloseCode.CARRIER)
            assert (err.code == "carrier_after_stop") == stopped
            continue  # the server closes here; the state machine must still hold
        assert not stopped, "a message was taken after stop"
        assert isinstance(parsed, CARRIER_TYPES)
        fields = dataclasses.asdict(parsed)
        fields.pop("audio", None)  # Media's bytes
        assert_unicode(fields)
        if isinstance(parsed, twilio.Connected):
            assert not started
        elif isinstance(parsed, twilio.StreamStart):
            assert not started and parsed.stream_sid and stream.stream_sid == parsed.stream_sid
            assert all(isinstance(v, str) for v in parsed.custom_parameters.values())
            assert all(isinstance(track, str) for track in parsed.tracks)
            started = True
        else:
            assert started, f"{parsed} before start"
            if isinstance(parsed, twilio.Media):
                assert isinstance(parsed.audio, bytes) and isinstance(parsed.track, str)
            elif isinstance(parsed, twilio.Dtmf):
                assert parsed.digit in protocol.DIGITS
            elif isinstance(parsed, twilio.Mark):
                assert isinstance(parsed.name, str)
            else:
                stopped = True


@fuzz(150)
@given(carrier_sequences(carrier_message, 8))
@example([to_json({**T_START, "start": {**T_START["start"], "tracks": 5}})])  # TypeError
@example([to_json(T_START), to_json({**T_MEDIA, "media": {"payload": "é"}})])
@example([to_json(T_START), to_json({**T_MARK, "mark": {"name": Raw('"\\ud800"')}})])
@example(['{"event": ' + DEEP + "}"])  # RecursionError from json.loads
@example([to_json(T_START), to_json(T_STOP), b"\x00", "not json"])  # after stop, whatever
def test_carrier_sequences(messages):
    play(messages)


@fuzz(100)
@given(carrier_sequences(real_carrier_message | carrier_message, 12))
def test_carrier_sequences_of_mostly_real_messages(messages):
    play(messages)


@fuzz(60)
@given(carrier_message)
@example(b"")
@example(to_json(T_START))
def test_nothing_is_taken_after_stop(message):
    stream = twilio.CarrierStream()
    stream.receive(to_json(T_START))
    assert stream.receive(to_json(T_STOP)) == twilio.Stop()
    with pytest.raises(ProtocolError) as late:
        stream.receive(message)
    assert late.value.code == "carrier_after_stop"
    assert late.value.close_code == CloseCode.CARRIER


@fuzz(60)
@given(
    st.lists(
        st.sampled_from([T_CONNECTED, T_MEDIA, T_DTMF, T_MARK, T_STOP]).map(to_json)
        | carrier_message,
        max_size=8,
    )
)
def test_nothing_but_connected_before_start(messages):
    stream = twilio.CarrierStream()
    for message in messages:
        if "start" in str(message):
            continue  # anything that might be a start
        try:
            parsed = stream.receive(message)
        except ProtocolError:
            continue
        assert isinstance(parsed, twilio.Connected)


urls = st.one_of(
    any_text,
    st.builds(
        "{}://{}{}/{}".format,
        st.sampled_from(["wss", "ws", "https", "http", "ftp", ""]),
        st.sampled_from(["voice.example.com", "[::1]", "[::1", "Host", "h\udcff", "é.com", ""])
        | any_text,
        st.sampled_from(["", ":443", ":80", ":8443", ":abc", ":99999", ":-1", ":"]),
        st.sampled_from(["twilio", "twilio?x=1", "", "%zz"]) | any_text,
    ),
)


@fuzz(150)
@given(any_text, st.lists(urls, max_size=3), st.none() | any_text)
@example("token", ["wss://h/twilio"], "é")  # compare_digest: TypeError on non-ASCII
@example("token", ["wss://[::1/twilio"], "x")  # urlsplit: ValueError
@example("token", ["wss://h:99999/twilio"], "x")  # .port: ValueError
@example("token", ["wss://h\udcff/twilio"], "x")  # a non-UTF-8 Host header: UnicodeEncodeError
def test_signature_check_never_raises(token, candidates, given_signature):
    assert twilio.signature_valid(token, candidates, given_signature) in (True, False)


@fuzz(100)
@given(any_text, urls)
@example("token", "wss://Voice.Example.com/twilio")  # was checked lowercased only: refused
@example("token", "wss://[::1]/twilio")  # was checked without the brackets: refused
def test_a_signature_signs_its_url_as_written(token, url):
    assert twilio.signature_valid(token, [url], twilio.signature(token, url))
    assert not twilio.signature_valid(token + "x", [url], twilio.signature(token, url))


@fuzz(50)
@given(
    any_text,
    st.from_regex(r"[A-Za-z][A-Za-z0-9.-]{0,20}", fullmatch=True) | st.just("[::1]"),
    st.sampled_from([("wss", 443), ("https", 443), ("ws", 80), ("http", 80)]),
)
def test_a_signature_signs_its_url_with_or_without_the_default_port(token, host, scheme):
    name, port = scheme
    for written, other in [("", f":{port}"), (f":{port}", "")]:
        signed = twilio.signature(token, f"{name}://{host}{written}/twilio")
        assert twilio.signature_valid(token, [f"{name}://{host}{other}/twilio"], signed)
        assert not twilio.signature_valid(token, [f"{name}://{host}:8443/twilio"], signed)


# ------------------------------------------------------------------ codecs

int16_arrays = hnp.arrays(np.int16, st.integers(min_value=0, max_value=300))


@fuzz(150)
@given(int16_arrays)
@example(np.array([-32768, -32636, -32635, -1, 0, 1, 32635, 32636, 32767], dtype=np.int16))
def test_mulaw_round_trip_is_within_the_quantization_step(samples):
    decoded = mulaw_decode(mulaw_encode(samples)).astype(np.int64)
    x = samples.astype(np.int64)
    # G.711 μ-law codes a magnitude m = min(|x|, 32635) + 0x84 in segment e (0..7), where
    # 2^(e+7) <= m < 2^(e+8), by its top 4 mantissa bits: steps of 2^(e+3). Decoding returns
    # the middle of the step, so the error is at most half a step, 2^(e+2) <= m / 32. Above the
    # clip (|x| > 32635) the loudest code decodes to 32124, 644 off at most: under m / 32 too.
    assert np.all(np.abs(decoded - x) <= (np.abs(x) + 0x84) / 32)
    assert np.all(decoded * x >= 0)  # never the wrong sign
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(decoded[order]) >= 0)  # louder never decodes quieter


def test_mulaw_reencodes_every_code_but_negative_zero():
    codes = bytes(range(256))
    assert mulaw_encode(mulaw_decode(codes)) == codes.replace(b"\x7f", b"\xff")


@fuzz(100)
@given(st.binary(max_size=512))
def test_mulaw_reencodes_any_bytes(data):
    assert mulaw_encode(mulaw_decode(data)) == data.replace(b"\x7f", b"\xff")


@fuzz(100)
@given(st.binary(max_size=513))
def test_pcm16_decodes_whole_samples_or_says_why(data):
    if len(data) % 2:
        with pytest.raises(CodecError, match=r"whole 16-bit samples; got \d+ bytes\.$"):
            pcm16_decode(data)
        return
    samples = pcm16_decode(data)
    assert samples.dtype == np.int16 and len(samples) == len(data) // 2
    assert pcm16_encode(samples) == data


@fuzz(50)
@given(int16_arrays)
def test_pcm16_round_trips_samples(samples):
    assert np.array_equal(pcm16_decode(pcm16_encode(samples)), samples)


loose_values = (
    json_values
    | st.integers()
    | st.sampled_from([8000, 16000, 24000, 48000, 44100, 8000.0, True, "pcm16", "mulaw", b"pcm16"])
    | st.binary(max_size=8)
    | st.builds(object)
)


@fuzz(150)
@given(st.sampled_from(["pcm16", "mulaw", "PCM16", "alaw", ""]) | loose_values, loose_values)
@example("pcm16", 10**5000)  # str() of the rate in the message: ValueError
@example("mulaw", -(10**5000))
@example("pcm16", 2**64)
def test_audio_format_parse_takes_any_values(encoding, sample_rate):
    try:
        audio = AudioFormat.parse(encoding, sample_rate)
    except CodecError as err:
        assert str(err).endswith("."), str(err)
        return
    assert type(sample_rate) is int and sample_rate in SUPPORTED_RATES[encoding]
    assert audio == AudioFormat(encoding, sample_rate)


@fuzz(150)
@given(
    hnp.arrays(
        st.sampled_from([np.float32, np.float64]),
        st.integers(min_value=0, max_value=64),
        elements={"allow_nan": True, "allow_infinity": True},
    )
)
@example(np.array([np.inf, -np.inf, np.nan, 1e300, -1e300, 1.0, -1.0, 0.99999, -0.0]))
def test_float_to_int16_takes_any_floats(samples):
    out = float_to_int16(samples)
    assert out.dtype == np.int16 and out.shape == samples.shape
    for x, y in zip(samples.tolist(), out.tolist(), strict=True):
        if math.isnan(x):
            assert y == 0
        else:
            assert abs(y - min(max(x * 32768, -32768), 32767)) <= 0.51


RATES = sorted({rate for rates in SUPPORTED_RATES.values() for rate in rates})


@fuzz(40)
@given(
    st.sampled_from(RATES),
    st.sampled_from(RATES),
    hnp.arrays(
        np.float32,
        st.integers(min_value=0, max_value=1500),
        elements=st.floats(min_value=-1, max_value=1, width=32),
    )
    | int16_arrays,
    st.lists(st.integers(min_value=0, max_value=1500), max_size=10),
)
@example(8000, 48000, np.zeros(1, dtype=np.int16), [0, 0, 1, 1])
def test_stream_resampler_takes_any_chunking(in_rate, out_rate, samples, cuts):
    resampler = StreamResampler(in_rate, out_rate)
    whole = resample(samples, in_rate, out_rate)
    for _ in range(2):  # after flush, the same resampler starts afresh
        pieces = [resampler.process(chunk) for chunk in np.split(samples, sorted(cuts))]
        streamed = np.concatenate([*pieces, resampler.flush()])
        assert streamed.dtype == samples.dtype
        assert abs(len(streamed) - len(whole)) <= 2


@pytest.mark.parametrize(
    "parse",
    [protocol.parse_start, protocol.parse_message, lambda m: twilio.CarrierStream().receive(m)],
)
def test_nesting_around_the_recursion_limit(parse):
    """Where json.loads just copes, what follows it (the error sentence's repr) must too."""
    limit = sys.getrecursionlimit()
    for depth in range(limit - 120, limit + 10):
        for key in ("type", "event"):
            with pytest.raises(ProtocolError):
                parse(f'{{"{key}": ' + "[" * depth + "]" * depth + "}")
