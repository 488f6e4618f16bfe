"""The hold audio without I/O: the message, the chime at its volume, the reminders between, and
the pace it is sent at."""

from __future__ import annotations

import asyncio

import numpy as np

from tests.support.fakes import FastClock
from voice.call import hold
from voice.call.hold import CHIME_CYCLE_S, HoldAudio, chime

RATE = 8000


def test_the_chime_peaks_at_its_volume_and_is_quiet_between_arpeggios():
    cycle = chime(RATE, 0.06)
    assert len(cycle) == CHIME_CYCLE_S * RATE
    assert abs(np.max(np.abs(cycle)) - 0.06 * 32767) <= 1
    assert np.max(np.abs(cycle[-RATE:])) < 0.01 * 32767  # the last second rings out


def test_hold_audio_says_the_message_then_chimes_with_a_reminder_every_so_often():
    message = np.full(RATE // 2, 1000, np.int16)
    reminder = np.full(RATE // 4, 2000, np.int16)
    audio = HoldAudio(RATE, message, reminder, reminder_every_s=3.0, volume=0.06)
    played = np.concatenate([audio.read(160) for _ in range(400)])  # 8 s in 20 ms reads
    assert np.all(played[: RATE // 2] == 1000)
    chiming = played[RATE // 2 : RATE // 2 + 3 * RATE]
    assert np.max(np.abs(chiming)) < 0.07 * 32767 and np.any(chiming)
    reminders = np.flatnonzero(played == 2000)
    assert reminders[0] == RATE // 2 + 3 * RATE  # after 3 s of chime
    assert len(reminders) == 2 * len(reminder)  # and again 3 s later, within the 8 s
    assert len(played) == 400 * 160


def test_hold_audio_without_a_reminder_chimes_on():
    audio = HoldAudio(RATE, np.zeros(0, np.int16), np.zeros(0, np.int16), 1.0, 0.06)
    played = audio.read(RATE * 13)  # two chime cycles and more
    assert len(played) == RATE * 13
    cycle = round(CHIME_CYCLE_S * RATE)
    for start in (0, cycle):  # each cycle sounds, never louder than the volume
        part = played[start : start + cycle]
        assert 0.05 * 32767 < np.max(np.abs(part)) <= 0.06 * 32767 + 1


async def test_hold_audio_is_sent_at_the_pace_it_plays_a_little_ahead():
    clock = FastClock(20.0)
    sent: list[tuple[float, int]] = []
    started = clock.now()

    async def send(frame: np.ndarray) -> None:
        sent.append((clock.now() - started, len(frame)))

    audio = HoldAudio(RATE, np.zeros(0, np.int16), np.zeros(0, np.int16), 1.0, 0.06)
    playing = asyncio.create_task(hold.play(audio.read, send, RATE, 40, 300, clock))
    await clock.sleep(2.0)
    playing.cancel()
    await asyncio.gather(playing, return_exceptions=True)
    assert all(count == RATE * 40 // 1000 for _, count in sent)
    for index, (at, _) in enumerate(sent):
        ahead_s = index * 0.04 - at  # audio sent before this frame, less the time gone by
        assert ahead_s <= 0.3 + 0.05
    assert 2.0 <= len(sent) * 0.04 <= 2.0 + 0.3 + 0.2
