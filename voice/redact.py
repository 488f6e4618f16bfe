"""Card numbers, phone numbers and email addresses taken out of transcripts before they are kept
or shown: `redact("call me on 020 7946 0958")` → "call me on [phone]".

Pure functions on `str`, safe from any thread; a few microseconds per short transcript. Written
for what speech recognition writes (digits, "john.smith@example.com") and for the same spoken out
("john dot smith at example dot com", "four one one one ..."). It errs towards redacting a number
that looks like a phone number; ordinary numbers (prices, sizes, times, dates, years, versions,
order numbers named as such) are left alone.
"""

from __future__ import annotations

import re

CARD = "[card]"
PHONE = "[phone]"
EMAIL = "[email]"

CARD_DIGITS = (13, 19)
PHONE_DIGITS = (7, 15)
"""Digit counts; 15 is the longest international number (E.164)."""
CARD_FIRST_DIGITS = "23456"
"""Payment cards start with 2-6 (Mastercard, Amex, Diners, JCB, Visa, Discover, UnionPay); other
Luhn-valid numbers (ISBNs, IMEIs, account numbers) are not cards."""

# Repetitions are bounded so that no text makes these take more than linear time.
_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.%+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){0,4}\.[A-Za-z]{2,24}\b"
)
_TLDS = "com|net|org|edu|gov|mil|int|io|co|uk|us|ca|au|de|fr|nl|ie|info|biz|me"
_DOT = r"(?:\.|\s+dot\s+)"
_LOCAL = rf"[a-z0-9][\w+-]{{0,63}}(?:(?:{_DOT}|\s+underscore\s+)[\w+-]{{1,64}}){{0,4}}"
_DOMAIN = rf"[a-z0-9][\w-]{{0,62}}(?:{_DOT}[\w-]{{1,63}}){{0,3}}{_DOT}(?:{_TLDS})\b"
_SPOKEN_EMAIL = re.compile(rf"(?<![\w+.-])(?P<local>{_LOCAL})\s+at\s+{_DOMAIN}", re.IGNORECASE)
_NOT_LOCAL = frozenset(
    "us me you him her them it this that home work here there least all once which what who"
    " arrive arrives arrived be is are was were out in on up off stay meet order shop buy look"
    " available sold open closed".split()
)
"""Words before "at ... dot com" that make it a sentence, not an address ("visit us at ...")."""

_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_TOKEN = rf"(?:(?:double|triple)\s+)?(?:(?:{'|'.join(_WORDS)})\b|\d+)"
_SPOKEN_DIGITS = re.compile(rf"(?<![\w.])({_TOKEN})(?:[\s,.-]+{_TOKEN}){{1,40}}\b", re.IGNORECASE)
_SPOKEN_TOKEN = re.compile(rf"(?:(double|triple)\s+)?({'|'.join(_WORDS)}|\d+)", re.IGNORECASE)

_DIGIT_RUN = re.compile(r"(?<![\w.,])\d+(?:(?:[ \t]*[-.,][ \t]*|[ \t]+)\d+)*")
_PHONE = re.compile(
    r"(?<![\w+#$€£%./,:-])"
    r"(?:\+[ ]?\d{1,3}[ .-]?)?"  # country code
    r"(?:\(\d{1,5}\)[ .-]?)?"  # (area code)
    r"\d{1,15}(?:[ .-]\d{1,15})*"
    r"(?![\w%]|[.,]\d)"
)
_NOT_PHONE = re.compile(
    r"\d+\.\d+"  # a decimal number
    r"|\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}"  # a date
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # an IPv4 address
    r"|(?:19|20)\d\d(?:[ -](?:19|20)\d\d)+"  # years: "2023-2024", "the 2023 2024 season"
)
_NUMBER_NAMED = re.compile(
    r"\b(?:order|invoice|tracking|serial|model|sku|ticket|case|confirmation|receipt|reference"
    r"|ref|part|item|product|account|po|isbn|imei)\b(?:\s*(?:number|no\.?|num|id|is|was|:|#))*"
    r"(?:\s+#?(?=[\w-]*\d)[\w-]+)*\s*#?\s*$",  # and the number's first parts ("1Z 999 AA1")
    re.IGNORECASE,
)
"""What comes before a number that is not a phone number ("order number 4418 2210")."""


def redact(text: str) -> str:
    """`text` with email addresses, card numbers (Luhn-checked) and phone numbers replaced by
    `EMAIL`, `CARD` and `PHONE`."""
    text = _EMAIL.sub(EMAIL, text)
    text = _SPOKEN_EMAIL.sub(_spoken_email, text)
    text = _SPOKEN_DIGITS.sub(_spoken_digits, text)
    text = _DIGIT_RUN.sub(_cards_in_run, text)
    return _PHONE.sub(_phone, text)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check that card numbers carry."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return bool(digits) and total % 10 == 0


def is_card(digits: str) -> bool:
    low, high = CARD_DIGITS
    return low <= len(digits) <= high and digits[0] in CARD_FIRST_DIGITS and luhn_valid(digits)


def _spoken_email(match: re.Match[str]) -> str:
    first = re.split(r"\W", match["local"], maxsplit=1)[0].lower()
    if first in _NOT_LOCAL or first.isdigit():
        return match[0]
    return EMAIL


def _spoken_digits(match: re.Match[str]) -> str:
    """A run of digits said as words ("five five five, one two ...") that makes a card or phone
    number. Runs with fewer than three number words are left to the digit rules."""
    tokens = _SPOKEN_TOKEN.findall(match[0])
    if sum(not token.isdigit() for _, token in tokens) < 3:
        return match[0]
    digits = ""
    for repeat, token in tokens:
        digit = _WORDS.get(token.lower(), token)
        digits += digit * {"double": 2, "triple": 3}.get(repeat.lower(), 1)
    if is_card(digits):
        return CARD
    low, high = PHONE_DIGITS
    return PHONE if low <= len(digits) <= high else match[0]


def _cards_in_run(match: re.Match[str]) -> str:
    """Card numbers inside a run of digit groups ("4111 1111 1111 1111", "my 2 cards: ...")."""
    run = match[0]
    groups = list(re.finditer(r"\d+", run))
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(groups):
        end = _card_end(groups, start)
        if end is None:
            start += 1
            continue
        spans.append((groups[start].start(), groups[end].end()))
        start = end + 1
    for begin, finish in reversed(spans):
        run = run[:begin] + CARD + run[finish:]
    return run


def _card_end(groups: list[re.Match[str]], start: int) -> int | None:
    """The last group of the longest card number starting at group `start`, if any."""
    digits, found = "", None
    for end in range(start, len(groups)):
        digits += groups[end][0]
        if len(digits) > CARD_DIGITS[1]:
            break
        if is_card(digits):
            found = end
    return found


def _phone(match: re.Match[str]) -> str:
    number = match[0]
    digits = sum(char.isdigit() for char in number)
    low, high = PHONE_DIGITS
    if not low <= digits <= high or _NOT_PHONE.fullmatch(number):
        return number
    if not number.startswith("+") and _NUMBER_NAMED.search(match.string, 0, match.start()):
        return number
    return PHONE
