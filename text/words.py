"""Words as rules compare them: case folded, punctuation and apostrophes gone, numbers said in
words, the sounds a speaker fills a pause with. General English only: nothing here knows any
trade.

Pure and immutable: safe to call from any thread.
"""

from __future__ import annotations

import re


def word_list(text: str) -> list[str]:
    """The whitespace-separated words of a literal: keeps long word lists readable."""
    return text.split()


APOSTROPHES = re.compile(r"['’`]")
"""Apostrophes as typed, as typeset and as a recognizer may write them."""
_NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+")


def plain_words(text: str) -> list[str]:
    """The words of `text` as rules and searches compare them: case folded, apostrophes dropped
    ("won't" → "wont"), and whatever is not a letter or a digit a space between words.

    "Wi-Fi isn't on!" → ["wi", "fi", "isnt", "on"]; "¿Dónde está?" → ["dónde", "está"].
    """
    return _NOT_LETTER_OR_DIGIT.sub(" ", APOSTROPHES.sub("", text.casefold())).split()


# ------------------------------------------------------------------ numbers

ONES = tuple(
    word_list(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen"
    )
)
"""The number words from 0 to 19, each at its value."""
TENS = ("", "", *word_list("twenty thirty forty fifty sixty seventy eighty ninety"))
"""The tens from 20 to 90, each at its tens digit."""
NUMBER_WORDS: dict[str, int] = {word: value for value, word in enumerate(ONES)} | {
    word: 10 * value for value, word in enumerate(TENS) if word
}
"""Number word → value: "seven" → 7, "forty" → 40."""


def numbers_to_digits(words: list[str]) -> list[str]:
    """Lower-case words with the numbers said in them written in digits: "two point four" →
    "2.4", "twenty four" → "24", "seven" → "7"."""
    out: list[str] = []
    for word in words:
        value = NUMBER_WORDS.get(word)
        if value is None:
            out.append(word)
            continue
        if out and value < 10 and out[-1].isdigit() and len(out[-1]) == 2 and out[-1][1] == "0":
            out[-1] = str(int(out[-1]) + value)  # twenty four
        elif len(out) >= 2 and out[-1] == "point" and out[-2].isdigit():
            out[-2:] = [f"{out[-2]}.{value}"]  # two point four
        else:
            out.append(str(value))
    return out


# ------------------------------------------------------------------ fillers

_HESITATION = re.compile(r"(?:u+h+|u+m+|e+m+|e+r+m*|a+h+|o+h+|o+w+|h+m+|m+h*m*)")


def is_filler(word: str) -> bool:
    """A hesitation sound however a recognizer spells it ("uh", "umm", "emm", "erm", "ahh",
    "oh", "hmmm", "mm", "mhm"): a lower-case word that says nothing."""
    return _HESITATION.fullmatch(word) is not None


# ------------------------------------------------------------------ phrases

PHRASE_STARTS = frozenset(
    word_list(
        "and but or so because if when while until unless before after since though although "
        "whereas which who whom whose where that for to in on at by with from of per within "
        "without about over under during through between into onto regardless including "
        "except than as once"
    )
)
"""Words that begin a phrase: a sentence cut just before one is heard as two natural parts."""
LEANS_ON_NEXT = frozenset(
    word_list("a an the my your our his her its their this these those each every")
)
"""Words said with the word after them: a sentence is not cut just after one ("lift the |
device")."""


# ------------------------------------------------------------------ abbreviations

NEVER_END = frozenset(
    word_list("e.g. i.e. cf. dr. mr. mrs. ms. prof. st. vs. approx. ext. dept. ca. jr. sr.")
)
"""Abbreviations (lower case) after which a sentence does not end, whatever follows."""
BEFORE_NUMBER = frozenset(word_list("no. nos. fig. tel. ref. vol. art. sec. ch. pp."))
"""Abbreviations after which a sentence does not end when a number follows ("No. 5", but
"No. You")."""
END_IF_CAPITAL = frozenset(word_list("etc. inc. ltd. co. corp. a.m. p.m. min. max. hrs. sec."))
"""Abbreviations that end a sentence only when a capital letter follows."""
