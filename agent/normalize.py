"""Text normalization shared by the KB index and the caller's question.

Questions arrive as speech-recognition transcripts: lowercase or not, with or without
punctuation, numbers spelled out ("two point four"). Both the KB and the question go through the
same `Normalizer`, so a company's own replacements (`vocabulary.yaml` in its KB folder:
what its callers' recognizer writes, the everyday words its callers use) only have to map onto
the words the KB's own text normalizes to. Nothing here knows any trade: the only tables are
general English (stopwords, contractions, suffixes; number words and fillers from
`text.words`).

Pure, immutable: safe to call from any thread.
"""

from __future__ import annotations

import re

from text.words import APOSTROPHES, is_filler, numbers_to_digits, word_list

STOPWORDS = frozenset(
    word_list("""
a about after again all also am an and any are as at be been before being but by can cant
could did didnt do does doesnt doing dont for from get gets getting got had has have having he
her hers him his how i id if ill im in into is isnt it its ive just keep keeps let lets me might
more most my myself need needs no nor not now of off on once only or other our ours out over
own please same she should so some still such than that thats the their them then there these
they this those through to too try trying under until up us very want wants was wasnt we were
what whats when where which while who whom why will with wont would wouldnt you your youre
yours yourself hi hello hey okay ok yeah yes yep well like so thanks thank really actually
just anyway sorry know tell said say says
""")
) | frozenset(
    word_list("""
something anything everything nothing thing things stuff someone anyone bit lot lots
got getting ago good bad great nice fine guess think wondering wonder question help able
happen happened going go goes went come came make made problem problems issue issues does
doesnt wrong hasnt havent arent werent cannot couldnt shouldnt yet supposed mean means
meaning meant
""")
)
"""Words that carry no topic, indexed neither in the KB nor in questions: function words, the
acknowledgements a transcript keeps ("okay", "yeah"), and the padding of spoken questions ("i
was wondering", "something went wrong"). Hesitation sounds ("um", "hmm") are not indexed either
(`text.words.is_filler`). Words that can be a topic in some trade (day, week, time,
long, new, buy) are kept."""

_NOT = {"can": "can not", "won": "will not"}
_IRREGULAR_NOT = re.compile(r"\b(can|won)['’]t\b")
_CONTRACTIONS = re.compile(r"(?<=[a-z])['’](?:s|re|ve|ll|d|m)\b|n['’]t\b")
"""where's, we're, I've, it'll, I'd, I'm: the short word is a stopword, so it goes; n't: not."""
_NON_WORD = re.compile(r"[^a-z0-9.]+")
_LONE_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")
_DIGIT_LETTER = re.compile(r"(?<=\d)(?=[a-z])|(?<=[a-z])(?=\d)")


def words(text: str) -> list[str]:
    """Lowercase words with punctuation removed and numbers as digits.

    `"My card's declined, two point five times in a row!"` ->
    `["my", "card", "declined", "2.5", "times", "in", "a", "row"]`.
    """
    text = _IRREGULAR_NOT.sub(lambda m: _NOT[m.group(1)], text.lower())
    text = _CONTRACTIONS.sub(lambda m: " not" if m.group(0)[0] == "n" else "", text)
    text = APOSTROPHES.sub("", text)
    text = _LONE_DOT.sub(" ", _NON_WORD.sub(" ", text))
    text = _DIGIT_LETTER.sub(" ", text)
    return numbers_to_digits(text.split())


def stem(word: str) -> str:
    """A deliberately small suffix stripper: both sides of a match get the same treatment.

    `flashing`/`flashes`/`flashed` -> `flash`; `shipping` -> `ship`;
    `addresses` -> `address`; `batteries` -> `battery`; `devices` -> `devic`.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, replacement, min_stem in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= min_stem:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                break
            if suffix == "ed" and word.endswith("eed"):
                break
            word = word[: len(word) - len(suffix)] + replacement
            if suffix in ("ing", "ed") and _doubled(word):
                word = word[:-1]
            break
    if len(word) >= 5 and word.endswith("e") and not word.endswith("ee"):
        word = word[:-1]
    return word


_SUFFIXES = (
    ("ies", "y", 2),
    ("ied", "y", 2),
    ("sses", "ss", 2),
    ("shes", "sh", 2),
    ("ches", "ch", 2),
    ("xes", "x", 2),
    ("ctions", "ct", 2),
    ("ction", "ct", 2),
    ("ings", "", 3),
    ("ing", "", 3),
    ("ed", "", 3),
    ("s", "", 3),
)


def _doubled(word: str) -> bool:
    return len(word) >= 3 and word[-1] == word[-2] and word[-1] not in "aeiouylsfz"


class Normalizer:
    """`words` and `terms` with a company's replacements applied to the words.

    `replacements` maps a phrase to the phrase it stands for ("wife i" -> "wi-fi",
    "blinking" -> "flashing"); both sides are normalized by `words` first, and longer
    phrases win over their prefixes. Immutable: share one per KB.
    """

    def __init__(self, replacements: dict[str, str] | None = None) -> None:
        table = {
            " ".join(words(heard)): " ".join(words(meant))
            for heard, meant in (replacements or {}).items()
        }
        self._table = {k: v for k, v in table.items() if k and k != v}
        self._pattern = (
            re.compile(
                r"\b(?:"
                + "|".join(re.escape(k) for k in sorted(self._table, key=len, reverse=True))
                + r")\b"
            )
            if self._table
            else None
        )

    def words(self, text: str) -> list[str]:
        """`words`, then the replacements."""
        found = " ".join(words(text))
        if self._pattern is not None:
            found = self._pattern.sub(lambda m: self._table[m.group(0)], found)
        return found.split()

    def text(self, text: str) -> str:
        """The text for the embedding model: as written for a KB without replacements, else
        its normalized words with the replacements made (the demo's suites were measured so;
        a KB's vocabulary.yaml therefore changes how every question is embedded)."""
        if self._pattern is None:
            return text
        return " ".join(self.words(text))

    def terms(self, text: str) -> list[str]:
        """The index terms of `text`: its words without stopwords, stemmed, in order."""
        out = []
        for word in self.words(text):
            if word in STOPWORDS or is_filler(word) or (len(word) == 1 and not word.isdigit()):
                continue
            stemmed = stem(word)
            if stemmed not in STOPWORDS:  # "happens", "questions"
                out.append(stemmed)
        return out


PLAIN = Normalizer()
"""No replacements: for a KB without `vocabulary.yaml`."""


def terms(text: str) -> list[str]:
    """The index terms of `text` with no replacements (see `Normalizer.terms`)."""
    return PLAIN.terms(text)
