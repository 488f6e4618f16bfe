"""The Twilio Media Streams dialect on literal messages, without sockets."""

from __future__ import annotations

import base64
import json

import pytest

from voice.channels import twilio
from voice.channels.closes import CloseCode
from voice.channels.protocol import ProtocolError

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC123",
        "streamSid": SID,
        "callSid": "CA123",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"caller_id": "+15550100"},
    },
    "streamSid": SID,
}
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def media(payload: str = base64.b64encode(b"\xff" * 160).decode()) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": "3",
            "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": payload},
            "streamSid": SID,
        }
    )


def started() -> twilio.CarrierStream:
    stream = twilio.CarrierStream()
    stream.receive(json.dumps(CONNECTED))
    stream.receive(json.dumps(START))
    return stream


def test_a_whole_stream_in_order():
    stream = twilio.CarrierStream()
    assert stream.receive(json.dumps(CONNECTED)) == twilio.Connected("Call", "1.0.0")
    begun = stream.receive(json.dumps(START))
    assert begun == twilio.StreamStart(
        stream_sid=SID,
        call_sid="CA123",
        account_sid="AC123",
        custom_parameters={"caller_id": "+15550100"},
        tracks=("inbound",),
    )
    assert stream.receive(media()) == twilio.Media(audio=b"\xff" * 160)
    dtmf = {"event": "dtmf", "streamSid": SID, "sequenceNumber": "5", "dtmf": {"digit": "0"}}
    assert stream.receive(json.dumps(dtmf)) == twilio.Dtmf("0")
    mark = {"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": "1:40"}}
    assert stream.receive(json.dumps(mark)) == twilio.Mark("1:40")
    stop = {"event": "stop", "sequenceNumber": "6", "streamSid": SID, "stop": {"callSid": "CA123"}}
    assert stream.receive(json.dumps(stop)) == twilio.Stop()
    with pytest.raises(ProtocolError) as late:
        stream.receive(media())
    assert late.value.code == "carrier_after_stop"


def test_only_one_connected_message_is_taken():
    stream = twilio.CarrierStream()
    stream.receive(json.dumps(CONNECTED))
    with pytest.raises(ProtocolError) as raised:
        stream.receive(json.dumps(CONNECTED))
    assert raised.value.code == "carrier_bad_order"


def test_start_without_connected_is_taken():
    assert isinstance(twilio.CarrierStream().receive(json.dumps(START)), twilio.StreamStart)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (media(), "carrier_before_start"),
        (json.dumps({"event": "mark", "mark": {"name": "x"}}), "carrier_before_start"),
        (json.dumps({"event": "dance"}), "carrier_unknown_event"),
        (json.dumps({"no": "event"}), "carrier_unknown_event"),
        (b"\x00\x01", "carrier_binary_frame"),
        ("not json", "carrier_bad_json"),
        ("[1]", "carrier_bad_json"),
        (
            json.dumps(
                {**START, "start": {**START["start"], "mediaFormat": {"encoding": "audio/l16"}}}
            ),
            "carrier_unsupported_format",
        ),
        (json.dumps({"event": "start", "start": {}}), "carrier_bad_start"),
        (json.dumps({"event": "start"}), "carrier_bad_start"),
    ],
)
def test_before_start_every_fault_closes_the_call(message, code):
    with pytest.raises(ProtocolError) as raised:
        twilio.CarrierStream().receive(message)
    assert raised.value.code == code
    assert raised.value.close_code == CloseCode.CARRIER
    assert raised.value.message.endswith(".")


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (media("not base64!!"), "carrier_bad_base64"),
        (media("QUJ"), "carrier_bad_base64"),
        (json.dumps({"event": "media", "streamSid": SID, "media": {}}), "carrier_bad_media"),
        (json.dumps({"event": "media", "streamSid": SID}), "carrier_bad_media"),
        (json.dumps({**json.loads(media()), "streamSid": "MZother"}), "carrier_wrong_stream"),
        (
            json.dumps({"event": "dtmf", "streamSid": SID, "dtmf": {"digit": "x"}}),
            "carrier_bad_dtmf",
        ),
        (json.dumps({"event": "mark", "streamSid": SID, "mark": {}}), "carrier_bad_mark"),
        (json.dumps(START), "carrier_bad_order"),
        (json.dumps(CONNECTED), "carrier_bad_order"),
        (json.dumps({"event": "closed"}), "carrier_unknown_event"),
    ],
)
def test_after_start_every_fault_closes_the_call(message, code):
    stream = started()
    with pytest.raises(ProtocolError) as raised:
        stream.receive(message)
    assert raised.value.code == code
    assert raised.value.close_code == CloseCode.CARRIER


def test_outbound_messages_are_what_twilio_reads():
    assert json.loads(twilio.media(SID, b"\x00\xff")) == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": "AP8="},
    }
    assert json.loads(twilio.mark(SID, "3:1840")) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": "3:1840"},
    }
    assert json.loads(twilio.clear(SID)) == {"event": "clear", "streamSid": SID}


def test_signature_matches_twilios_published_example():
    """The example in Twilio's request-validation documentation (token, URL, POST fields)."""
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio.signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_signature_check():
    url = "wss://voice.example.com/twilio"
    good = twilio.signature("secret", url)
    assert twilio.signature_valid("secret", [url], good)
    assert twilio.signature_valid("secret", ["wss://voice.example.com:443/twilio"], good)
    assert twilio.signature_valid(
        "secret", [url], twilio.signature("secret", "wss://voice.example.com:443/twilio")
    )
    assert not twilio.signature_valid("secret", [url], None)
    assert not twilio.signature_valid("secret", [url], "")
    assert not twilio.signature_valid("other", [url], good)
    assert not twilio.signature_valid("secret", ["wss://evil.example.com/twilio"], good)
    assert not twilio.signature_valid("secret", ["wss://voice.example.com:8443/twilio"], good)
