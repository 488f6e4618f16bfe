"""Piper synthesis alone on the machine: a caller's first clause gets the spare cores."""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path

import numpy as np
import pytest

from tts.piper import Synthesizer
from tts.settings import TtsSettings
from voice.ops.workers import WorkerPool

pytestmark = pytest.mark.models

CLAUSE = "Your new card will reach you"


class Spied:
    """A real synthesizer that notes whether each clause was made alone."""

    def __init__(self, settings: TtsSettings) -> None:
        self.quiet = True
        self.synthesizer = Synthesizer(settings, quiet=lambda: self.quiet)
        self.alone: list[bool] = []
        made = self.synthesizer.synthesize_blocking

        def noting(text: str, alone: bool = False) -> np.ndarray:
            self.alone.append(alone)
            return made(text, alone)

        self.synthesizer.synthesize_blocking = noting  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def spied() -> Spied:
    return Spied(TtsSettings())


async def test_a_first_clause_alone_on_the_machine_is_made_the_wide_way(spied: Spied) -> None:
    spied.alone.clear()
    spied.quiet = True
    await spied.synthesizer.synthesize(CLAUSE)  # urgent, nothing else under way
    spied.quiet = False
    await spied.synthesizer.synthesize(CLAUSE)  # recognition is busy
    spied.quiet = True
    await spied.synthesizer.synthesize(CLAUSE, urgent=False)  # a later clause: no hurry
    await asyncio.gather(*(spied.synthesizer.synthesize(CLAUSE) for _ in range(2)))
    assert spied.alone == [True, False, False, True, False]  # the second waits behind one


async def test_the_wide_way_says_the_same_clause(spied: Spied) -> None:
    usual = spied.synthesizer.synthesize_blocking(CLAUSE, False)
    wide = spied.synthesizer.synthesize_blocking(CLAUSE, True)
    assert abs(len(wide) - len(usual)) < 0.15 * len(usual)  # Piper varies its timing a little
    assert np.abs(wide).max() > 1000


async def test_both_ways_of_the_voice_share_one_memory_arena() -> None:
    """Each ONNX session's own arena grows to its longest clause and keeps it: two sessions
    held twice the memory. One arena shared holds it once."""
    long_clause = " ".join(["the late fee applies when the payment arrives after the due date"] * 4)
    pool = WorkerPool("tts", functools.partial(Synthesizer, TtsSettings()))
    try:
        (pid,) = pool.pids
        before = resident(pid)
        await pool.call(Synthesizer.synthesize_blocking, long_clause, False)
        usual = resident(pid)
        await pool.call(Synthesizer.synthesize_blocking, long_clause, True)
        both = resident(pid)
    finally:
        pool.close()
    grown = usual - before
    assert grown > 30_000_000, f"the long clause took {grown / 1e6:.0f} MB"
    assert both - usual < grown / 2, f"{(both - usual) / 1e6:.0f} MB more for the wide way"


def resident(pid: int) -> int:
    """Resident memory of process `pid`, bytes."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
