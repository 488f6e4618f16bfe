"""Silero VAD: a caller is heard even while the process's shared threads are all busy."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from asr.vad import SAMPLE_RATE, WINDOW

pytestmark = pytest.mark.models


async def test_hearing_does_not_wait_behind_other_work_off_the_event_loop(models, say):
    speech = say("Hello, I have a question about my order.")
    release = threading.Event()
    loop = asyncio.get_running_loop()
    # Fill every thread of the loop's default pool (what a stuck store query would hold).
    blocked = [loop.run_in_executor(None, release.wait) for _ in range(64)]
    try:
        stream = models.vad.stream()
        probabilities = await asyncio.wait_for(stream.hear(speech), timeout=10)
    finally:
        release.set()
        await asyncio.gather(*blocked)
    assert len(probabilities) == len(speech) // WINDOW
    assert max(probabilities) > 0.9 and min(probabilities) < 0.1  # the lead is silent


async def test_streams_keep_their_own_state(models, say):
    speech = say("Hello there.")
    whole = models.vad.stream().process(speech)
    pieces, stream = [], models.vad.stream()
    for start in range(0, len(speech), SAMPLE_RATE // 10):
        pieces.extend(await stream.hear(speech[start : start + SAMPLE_RATE // 10]))
    assert np.allclose(whole, pieces, atol=1e-4)
