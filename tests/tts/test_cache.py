"""The speech cache: the first clauses of replies said before, within a byte budget."""

from __future__ import annotations

import numpy as np
import pytest

from tts.cache import SpeechCache


def audio(samples: int, value: int = 1) -> np.ndarray:
    return np.full(samples, value, np.int16)


def test_a_clause_said_before_comes_back_and_is_counted() -> None:
    cache = SpeechCache(1000)
    assert cache.get("Hello there.") is None
    cache.put("Hello there.", audio(10, 7))
    again = cache.get("Hello there.")
    assert again is not None and again.tolist() == [7] * 10
    assert (cache.hits, cache.misses, cache.bytes) == (1, 1, 20)


def test_the_clauses_said_longest_ago_go_first_to_stay_within_the_budget() -> None:
    cache = SpeechCache(100)  # 50 samples
    cache.put("one", audio(20))
    cache.put("two", audio(20))
    cache.get("one")  # said again: now the most recent
    cache.put("three", audio(20))
    assert "two" not in cache and "one" in cache and "three" in cache
    assert cache.bytes == 80


def test_a_clause_put_again_is_counted_once() -> None:
    cache = SpeechCache(100)
    cache.put("one", audio(20))
    cache.put("one", audio(30))
    assert len(cache) == 1 and cache.bytes == 60


def test_audio_larger_than_the_budget_and_a_budget_of_zero_keep_nothing() -> None:
    cache = SpeechCache(10)
    cache.put("long", audio(6))
    assert "long" not in cache and cache.bytes == 0
    nothing = SpeechCache(0)
    nothing.put("a", audio(1))
    assert len(nothing) == 0


def test_kept_audio_is_a_read_only_copy_shared_by_every_call() -> None:
    cache = SpeechCache(1000)
    made = audio(4, 3)
    cache.put("x", made)
    made[:] = 0  # the synthesizer's buffer reused: the kept audio does not change
    kept = cache.get("x")
    assert kept is not None and kept.tolist() == [3, 3, 3, 3]
    with pytest.raises(ValueError):
        kept[0] = 1
