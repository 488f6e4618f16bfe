"""The caller protocol's parser on literal messages."""

import json

import pytest

from voice.channels import protocol
from voice.channels.closes import CloseCode
from voice.channels.codecs import AudioFormat
from voice.channels.protocol import ProtocolError


def start(**fields):
    message = {"type": "start", "version": 1, "audio": {"encoding": "pcm16", "sample_rate": 16000}}
    message.update(fields)
    return json.dumps(message)


def test_start_with_all_fields():
    parsed = protocol.parse_start(
        start(
            audio={"encoding": "mulaw", "sample_rate": 8000},
            caller_id="+15550100",
            language="en",
            metadata={"kiosk": "lobby"},
            options={"realtime_playback": False},
        )
    )
    assert parsed.audio == AudioFormat("mulaw", 8000)
    assert parsed.caller_id == "+15550100"
    assert parsed.metadata == {"kiosk": "lobby"}
    assert parsed.realtime_playback is False


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_every_pcm_rate_is_accepted(rate):
    assert (
        protocol.parse_start(
            start(audio={"encoding": "pcm16", "sample_rate": rate})
        ).audio.sample_rate
        == rate
    )


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b"\x00\x01", "bad_start"),
        ("not json", "bad_start"),
        ("[1, 2]", "bad_start"),
        (json.dumps({"type": "text", "text": "hi"}), "bad_start"),
        (start(version=3), "unsupported_version"),
        (start(version=True), "unsupported_version"),
        (start(audio={"encoding": "pcm16", "sample_rate": 44100}), "unsupported_format"),
        (start(audio={"encoding": "mulaw", "sample_rate": 16000}), "unsupported_format"),
        (start(audio={"encoding": "opus", "sample_rate": 48000}), "unsupported_format"),
        (start(audio="pcm16"), "bad_start"),
        (start(surprise=True), "bad_start"),
        (start(caller_id=5), "bad_start"),
        (start(metadata=[1]), "bad_start"),
    ],
)
def test_bad_start_closes_the_call(message, code):
    with pytest.raises(ProtocolError) as raised:
        protocol.parse_start(message)
    assert raised.value.code == code
    assert raised.value.close_code == CloseCode.BAD_START
    assert raised.value.message.endswith(".")


def test_messages_after_start():
    assert protocol.parse_message('{"type": "text", "text": " hello "}') == protocol.TextQuestion(
        "hello"
    )
    assert protocol.parse_message('{"type": "hangup"}') == protocol.HangUp()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("AAECAw==", "bad_message"),
        ('{"type": "text"}', "bad_message"),
        ('{"type": "text", "text": "   "}', "bad_message"),
        ('{"type": "text", "text": "' + "x" * 3000 + '"}', "bad_message"),
        ('{"type": "start"}', "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
    ],
)
def test_bad_messages_leave_the_call_going(message, code):
    with pytest.raises(ProtocolError) as raised:
        protocol.parse_message(message)
    assert raised.value.code == code
    assert raised.value.close_code is None


def test_audio_frame_checks():
    pcm = AudioFormat("pcm16", 16000)
    protocol.check_audio_frame(b"\x00" * 640, pcm, 100)  # 20 ms
    with pytest.raises(ProtocolError, match="whole 16-bit samples") as odd:
        protocol.check_audio_frame(b"\x00" * 641, pcm, 100)
    assert odd.value.code == "odd_length_audio"
    with pytest.raises(ProtocolError) as long:
        protocol.check_audio_frame(b"\x00" * 3202, pcm, 100)  # 100.06 ms
    assert long.value.code == "frame_too_long"
    protocol.check_audio_frame(b"\x00" * 800, AudioFormat("mulaw", 8000), 100)  # 100 ms


def test_events_encode_with_their_type():
    encoded = json.loads(protocol.encode(protocol.Clear(turn=3)))
    assert encoded == {"type": "clear", "turn": 3}
    error = json.loads(protocol.encode(protocol.Error(code="bad_message", message="No.")))
    assert error == {"type": "error", "code": "bad_message", "message": "No.", "fatal": False}
