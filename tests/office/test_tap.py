"""A call's audio for listeners, without I/O: both sides, at 16 kHz, each frame marked with its
side; nothing done while nobody listens; a listener that falls behind dropped, the call
untouched."""

from __future__ import annotations

import numpy as np

from voice.channels.codecs import float_to_int16
from voice.office.tap import ASSISTANT, CALLER, CLEAR, LISTENER_FRAMES, AudioTap


async def frames(listener, count: int) -> list[bytes]:  # type: ignore[no-untyped-def]
    got = []
    async for frame in listener:
        got.append(frame)
        if len(got) == count:
            break
    return got


async def test_listeners_hear_both_sides_at_16_khz_marked_by_side():
    tap = AudioTap(caller_rate=8000)
    listener = tap.listen()
    tap.caller_audio(np.full(320, 0.5, np.float32))  # the caller, 16 kHz float
    for _ in range(50):  # 1 s
        tap.reply_audio(float_to_int16(np.full(160, 0.25, np.float32)))  # a reply, 8 kHz int16
    tap.reply_cleared()
    caller, *replies, clear = await frames(listener, 1 + 50 + 1)  # each reply frame at once
    assert caller[0] == CALLER and len(caller) == 1 + 320 * 2
    assert np.all(np.frombuffer(caller[1:], "<i2") == float_to_int16(np.full(1, 0.5))[0])
    assert {frame[0] for frame in replies} == {ASSISTANT}
    samples = sum(len(frame) - 1 for frame in replies) // 2
    assert samples == 16_000  # resampled to 16 kHz, each frame's at once
    assert clear == bytes([CLEAR])


async def test_a_listener_hears_only_what_comes_after_it_and_the_call_ending_ends_it():
    tap = AudioTap(caller_rate=16000)
    tap.caller_audio(np.ones(320, np.float32))  # nobody hears this
    first, second = tap.listen(), tap.listen()
    assert tap.listeners == 2
    first.close()
    assert tap.listeners == 1
    tap.close()
    assert [frame async for frame in second] == []
    late = tap.listen()
    assert [frame async for frame in late] == []


async def test_a_listener_that_falls_behind_is_dropped_and_the_others_go_on():
    tap = AudioTap(caller_rate=16000)
    slow, keen = tap.listen(), tap.listen()
    for _ in range(LISTENER_FRAMES + 1):
        tap.caller_audio(np.zeros(320, np.float32))
        if _ % 100 == 0:
            await frames(keen, 1)  # keeps up, roughly
    assert slow.dropped and not keen.dropped and tap.listeners == 1
    assert len([frame async for frame in slow]) <= LISTENER_FRAMES
