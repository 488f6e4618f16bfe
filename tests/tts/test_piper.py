"""Piper synthesis alone on the machine: a caller's first clause gets the spare cores."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tts.piper import Synthesizer
from tts.settings import TtsSettings

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
