"""SIP, the pure part: where to listen, who may call, the reply audio waiting for the line."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from voice.channels.sip import (
    Gone,
    Heard,
    Keyed,
    ListenAddress,
    Peers,
    Playout,
    Reached,
    caller_of,
    host_of,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("udp:0.0.0.0:5060", ListenAddress("udp", "0.0.0.0", 5060)),
        ("TCP:10.1.2.3:5080", ListenAddress("tcp", "10.1.2.3", 5080)),
        ("udp:[::1]:5060", ListenAddress("udp", "::1", 5060)),
        ("udp:127.0.0.1:0", ListenAddress("udp", "127.0.0.1", 0)),
    ],
)
def test_listen_addresses_are_read(spec, expected):
    assert ListenAddress.parse(spec) == expected


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("0.0.0.0:5060", "udp:HOST:PORT"),
        ("tls:0.0.0.0:5061", "udp:HOST:PORT"),
        ("udp:pbx.example:5060", "IP address"),
        ("udp:0.0.0.0:sip", "IP address"),
        ("udp:0.0.0.0:70000", "between 0 and 65535"),
    ],
)
def test_a_wrong_listen_address_says_what_is_wrong(spec, says):
    with pytest.raises(ValueError, match=says):
        ListenAddress.parse(spec)


def test_peers_are_addresses_and_networks():
    peers = Peers.parse("10.0.0.5, 192.168.10.0/24, 2001:db8::/32")
    assert peers.allows("10.0.0.5:5060")
    assert not peers.allows("10.0.0.6:5060")
    assert peers.allows("192.168.10.77:5062")
    assert not peers.allows("192.168.11.1:5060")
    assert peers.allows("[2001:db8::9]:5060")
    assert not peers.allows("not an address")


def test_without_a_list_only_this_machine_may_call():
    peers = Peers.parse(None)
    assert peers.allows("127.0.0.1:5080") and peers.allows("[::1]:5060")
    assert not peers.allows("10.0.0.5:5060")


def test_a_wrong_peer_entry_is_refused():
    with pytest.raises(ValueError, match="'pbx.example' is not an IP address"):
        Peers.parse("10.0.0.5, pbx.example")


def test_hosts_and_callers_are_read_from_what_sip_gives():
    assert host_of("10.0.0.5:5060") == "10.0.0.5"
    assert host_of("[::1]:5060") == "::1"
    assert host_of("::1") == "::1"
    assert caller_of('"Jane" <sip:+15551234@pbx.example>;tag=x1') == "+15551234"
    assert caller_of("<sip:201@10.0.0.5:5060;transport=udp>") == "201"
    assert caller_of("<tel:+15551234;phone-context=x>") == "+15551234"
    assert caller_of("<sip:pbx.example>") is None
    assert caller_of("anonymous") is None


def test_playout_gives_frames_then_silence_and_reports_marks_as_they_go_out():
    playout = Playout(frame_bytes=4)
    playout.add(b"abcdef")
    playout.mark(1, 30)
    playout.add(b"gh")
    playout.mark(1, 40)
    assert playout.take() == (b"abcd", [])
    assert playout.take() == (b"efgh", [Reached(1, 30), Reached(1, 40)])
    assert playout.take() == (bytes(4), [])
    playout.add(b"xyz")
    playout.mark(2, 10)
    assert playout.take() == (b"xyz\0", [Reached(2, 10)])


def test_a_clear_drops_the_waiting_audio_and_its_marks():
    playout = Playout(frame_bytes=4)
    playout.add(b"abcdefgh")
    playout.mark(1, 20)
    assert playout.take() == (b"abcd", [])
    playout.clear()
    assert playout.waiting_bytes == 0
    assert playout.take() == (bytes(4), [])
    playout.add(b"1234")
    playout.mark(2, 10)
    assert playout.take() == (b"1234", [Reached(2, 10)])


def test_playout_takes_from_another_thread_while_audio_is_added():
    playout = Playout(frame_bytes=320)
    chunks = [bytes([1 + n % 250]) * 777 for n in range(200)]  # no zero: silence is padding
    taken: list[bytes] = []
    done = threading.Event()

    def media_clock() -> None:
        while not done.is_set() or playout.waiting_bytes:
            taken.append(playout.take()[0])

    clock = threading.Thread(target=media_clock)
    clock.start()
    for chunk in chunks:
        playout.add(chunk)
    done.set()
    clock.join(10)
    # Where the audio ran dry the frame was padded with silence; the rest came out whole.
    assert b"".join(taken).replace(b"\0", b"") == b"".join(chunks)


def _sip_call(loop, max_frames: int = 3):
    from voice.channels.sip_agent import SipCall

    info = SimpleNamespace(
        remoteUri="<sip:201@pbx>", localUri="<sip:voicedesk@x>", callIdString="c"
    )
    return SipCall(SimpleNamespace(loop=loop), 0, "10.0.0.5:5060", info, max_frames)  # type: ignore[arg-type]


async def test_a_caller_who_gives_up_before_the_audio_is_up_ends_the_wait():
    call = _sip_call(asyncio.get_running_loop())
    call._deliver(Gone("hangup"))
    with pytest.raises(ConnectionError, match="hangup"):
        await call.media
    assert call.over


async def test_caller_frames_beyond_the_bound_are_dropped_and_counted_but_news_is_not():
    call = _sip_call(asyncio.get_running_loop(), max_frames=2)
    for _ in range(4):
        call._deliver(Heard(b"\0\0"))
    call._deliver(Keyed("0"))
    assert call.dropped_frames == 2
    assert [type(call.news.get_nowait()).__name__ for _ in range(3)] == ["Heard", "Heard", "Keyed"]
