"""`text.words`: the one set of word rules, and the modules that compare words agreeing on it."""

from __future__ import annotations

import pytest

from agent import guardrails, normalize, speech
from text.words import (
    NEVER_END,
    NUMBER_WORDS,
    is_filler,
    numbers_to_digits,
    plain_words,
)
from tts import clauses, numbers
from voice.call.turns import interrupts
from voice.eval.wer import normalize_words
from voice.office.store import normalize_question


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Wi-Fi isn't on!", ["wi", "fi", "isnt", "on"]),
        ("What’s `new`?", ["whats", "new"]),
        ("¿Dónde está la Straße?", ["dónde", "está", "la", "strasse"]),
        ("snake_case 2.4", ["snake", "case", "2", "4"]),
        ("  ...  ", []),
    ],
)
def test_plain_words(text: str, words: list[str]) -> None:
    assert plain_words(text) == words


def test_number_words_say_what_speech_says() -> None:
    """One table: the words the TTS says for 0..99 read back as the same numbers."""
    for n in range(100):
        said = numbers.number_words(n).replace("-", " ").split()
        assert numbers_to_digits(said) == [str(n)], said
    assert NUMBER_WORDS["forty"] == 40 and "hundred" not in NUMBER_WORDS


@pytest.mark.parametrize(
    ("words", "digits"),
    [
        ("two point four".split(), ["2.4"]),
        ("twenty four hours".split(), ["24", "hours"]),
        ("point two".split(), ["point", "2"]),
        ("seven eight".split(), ["7", "8"]),
    ],
)
def test_numbers_to_digits(words: list[str], digits: list[str]) -> None:
    assert numbers_to_digits(words) == digits


@pytest.mark.parametrize(
    "word", ["uh", "uhh", "um", "umm", "erm", "emm", "ahh", "oh", "hmmm", "mhm"]
)
def test_fillers(word: str) -> None:
    assert is_filler(word)


@pytest.mark.parametrize("word", ["huh", "ohm", "hum", "mom", "okay", "umbrella"])
def test_words_that_are_no_fillers(word: str) -> None:
    assert not is_filler(word)


def test_a_filler_is_nothing_to_any_rule() -> None:
    """Barge-in, the request for a person, the search index: "umm" counts for none of them."""
    assert not interrupts("umm, hmmm", 2000, min_words_ms=1000)
    assert guardrails.asks_for_human(guardrails.flatten("Umm, uhh, agent please"))
    assert normalize.terms("umm the router, uhh") == ["router"]


def test_the_word_comparisons_agree() -> None:
    """The guardrails, WER, the store's grouping and barge-in see the same words."""
    text = "What's the Wi-Fi password?"
    assert guardrails.flatten(text) == normalize_question(text) == "whats the wi fi password"
    assert normalize_words(text) == plain_words(text)
    assert interrupts("What's that?", 300, min_words_ms=1000)  # "whats" interrupts


@pytest.mark.parametrize("abbreviation", sorted(NEVER_END))
def test_both_sentence_splitters_keep_an_abbreviation_in_its_sentence(abbreviation: str) -> None:
    text = f"Ask {abbreviation.capitalize()} Smith today. Then call."
    expected = [f"Ask {abbreviation.capitalize()} Smith today.", "Then call."]
    assert speech.split_sentences(text) == expected
    assert clauses.split_sentences(text) == expected
