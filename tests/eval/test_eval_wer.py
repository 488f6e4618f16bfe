"""voice/eval/wer.py: normalization and word alignment for the word error rate."""

from __future__ import annotations

import pytest

from voice.eval.wer import Edit, align, align_words, normalize_words, pooled_wer


@pytest.mark.parametrize(
    ("reference", "transcript"),
    [
        ("How long is the warranty?", "how long is the warranty"),  # case, punctuation
        ("You have 7 days.", "You have seven days."),  # number words
        ("Join the 2.4 GHz network", "join the two point four gigahertz network"),
        ("Use the 2.4 network", "use the 2.4 network"),
        ("My Wi-Fi plug won't connect", "my wi fi plug wont connect"),  # hyphens, apostrophes
        ("It's 24/7, right?", "It’s twenty-four seven, right"),
        ("Section 4.2, please", "section four point two please"),
    ],
)
def test_normalized_forms_of_the_same_words_are_no_errors(reference, transcript):
    assert align(reference, transcript).wer == 0.0


def test_normalize_words():
    assert normalize_words("It's 2.4 GHz!") == ["its", "two", "point", "four", "gigahertz"]
    assert normalize_words("  ") == []


def test_each_kind_of_error_is_aligned_and_counted():
    alignment = align("my smart bulb keeps flashing red", "my smart bold keeps flashing red light")
    assert [edit.op for edit in alignment.edits] == ["ok", "ok", "sub", "ok", "ok", "ok", "ins"]
    assert alignment.edits[2] == Edit("sub", "bulb", "bold")
    assert alignment.errors == 2 and alignment.reference_words == 6
    assert alignment.wer == pytest.approx(2 / 6)
    dropped = align("how long is the warranty", "how long warranty")
    assert [e.op for e in dropped.edits] == ["ok", "ok", "del", "del", "ok"]
    assert dropped.wer == pytest.approx(2 / 5)


def test_alignment_edge_cases():
    assert align_words([], []).wer == 0.0
    assert align_words(["a", "b"], []).wer == 1.0
    assert align_words([], ["a"]).wer == 1.0
    assert align_words(["a"], ["b", "c", "d"]).wer == 3.0  # WER can exceed 1


def test_pooled_wer_weighs_by_reference_words():
    short = align("yes", "no")  # 1 error / 1 word
    long = align(
        "one two three four five six seven eight nine",
        "one two three four five six seven eight nine",
    )
    assert pooled_wer([short, long]) == pytest.approx(1 / 10)
    assert pooled_wer([]) is None
