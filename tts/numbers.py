"""Numbers as English words, for speech: cardinals, ordinals, years, digits, decimals."""

from __future__ import annotations

import re

from text.words import ONES, TENS

_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_IRREGULAR_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def number_words(n: int) -> str:
    """Cardinal words: 1200 → "one thousand two hundred" (US style, no "and").

    Numbers from a trillion up are read digit by digit.
    """
    if n < 0:
        return "minus " + number_words(-n)
    if n >= 10**12:
        return digit_words(str(n))
    parts = []
    for value, name in _SCALES:
        count, n = divmod(n, value)
        if count:
            parts.append(f"{_under_thousand(count)} {name}")
    if n or not parts:
        parts.append(_under_thousand(n))
    return " ".join(parts)


def _under_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = [f"{ONES[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        parts.append(TENS[tens] + (f"-{ONES[ones]}" if ones else ""))
    elif rest or not hundreds:
        parts.append(ONES[rest])
    return " ".join(parts)


def ordinal_words(n: int) -> str:
    """21 → "twenty-first", 100 → "one hundredth"."""
    head, last = re.fullmatch(r"(.*?)([a-z]+)", number_words(n)).groups()  # type: ignore[union-attr]
    if last in _IRREGULAR_ORDINALS:
        return head + _IRREGULAR_ORDINALS[last]
    return head + (last[:-1] + "ieth" if last.endswith("y") else last + "th")


def year_words(year: int) -> str:
    """2024 → "twenty twenty-four", 1905 → "nineteen oh five", 2005 → "two thousand five"."""
    century, rest = divmod(year, 100)
    if not 1000 <= year <= 9999 or 2000 <= year <= 2009:
        return number_words(year)
    if rest == 0:
        return f"{number_words(century)} hundred"
    return f"{number_words(century)} {'oh ' if rest < 10 else ''}{number_words(rest)}"


def digit_words(digits: str) -> str:
    """ "0451" → "zero four five one" (non-digits are skipped)."""
    return " ".join(ONES[int(d)] for d in digits if d in "0123456789")


def decimal_words(text: str) -> str:
    """A written number to words: "1,200" → "one thousand two hundred", "2.4" → "two point
    four"; dotted sections read part by part: "4.2.10" → "four point two point ten"."""
    whole, *decimals = text.replace(",", "").split(".")
    if len(decimals) == 1:
        return f"{int_words(whole)} point {digit_words(decimals[0])}".strip()
    return " point ".join(int_words(part) for part in [whole, *decimals])


def int_words(digits: str) -> str:
    """Digits to cardinal words; too long to be a quantity ( > 15 digits): digit by digit."""
    return number_words(int(digits)) if 0 < len(digits) <= 15 else digit_words(digits)


def say_number(text: str) -> str:
    """A number token as found in text, with an optional sign."""
    sign = "minus " if text[0] in "-−" else ""
    text = text.lstrip("-−+")
    if text.isdigit() and (len(text) >= 7 or (len(text) > 1 and text[0] == "0")):
        return sign + digit_words(text)
    return sign + decimal_words(text)
