"""Card numbers, phone numbers and email addresses taken out of transcripts before they are kept
or shown: `redact("call me on 020 7946 0958")` → "call me on [phone]".

Pure functions on `str`, safe from any thread; about 40 µs for a sentence (2-core CPU), linear in
its length (every pattern's repetition is bounded or cannot backtrack far). Written for what
speech recognition writes: digits however it groups them ("4111 1111 1111 1111",
"4,111,111,111,111,111", "555, 123, 4567", "555.123.4567"), the same said as words ("five five
five, one two three, forty five sixty seven", "double one"), and addresses written, said ("john
dot smith at example dot com", "at the rate") or run together when "at" is misheard
("janeedgmail.com"). It errs towards redacting a number that looks like a phone number; ordinary
numbers (prices, quantities, sizes, times, dates, years, versions, addresses, order numbers
named as such) are left alone. Benchmark: `bench/redaction.py`, results in docs/benchmarks.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from text.words import ONES, TENS

CARD = "[card]"
PHONE = "[phone]"
EMAIL = "[email]"
NUMBER = "[number]"
"""A run of more digits than a phone number has that is not a valid card number: a card number
misheard by a digit, a bank account, a SIM's serial."""

CARD_DIGITS = (13, 19)
PHONE_DIGITS = (7, 15)
"""Digit counts; 15 is the longest international number (E.164)."""
CARD_FIRST_DIGITS = "23456"
"""Payment cards start with 2-6 (Mastercard, Amex, Diners, JCB, Visa, Discover, UnionPay); other
Luhn-valid numbers (ISBNs, IMEIs, account numbers) are not cards."""
COMMA_PHONE_DIGITS = 10
"""A number written with commas is a phone number from this many digits: "5,551,234,567" is what
a recognizer writes for a number said in one breath, "1,000,000" an amount."""

# ------------------------------------------------------------------ email addresses

_TLDS = (
    "com|net|org|edu|gov|mil|int|info|biz|io|co|ai|app|dev|tv|me|us|uk|ca|au|nz|ie|de|fr|es|it"
    "|nl|be|ch|at|se|no|dk|fi|pl|pt|in|jp|cn|br|mx|za|eu"
)
_MAIL_PROVIDERS = (
    "gmail|googlemail|yahoo|ymail|hotmail|outlook|icloud|aol|protonmail|proton|gmx|yandex|zoho"
    "|comcast|verizon|btinternet|orange|wanadoo|libero|rediffmail"
)
_DOT = r"(?:\.|\s+dot\s+)"
_DASH = r"\s+(?:dash|hyphen)\s+"
_AT = r"(?P<at>\s?@\s?|\s+at(?:\s+the\s+rate(?:\s+of)?|\s+sign)?\s+)"
"""What joins an address's two halves: "@", "at", the Indian English "at the rate", "at sign"."""
_LOCAL = rf"[a-z0-9][\w+-]{{0,63}}(?:(?:{_DOT}|{_DASH}|\s+underscore\s+)[\w+-]{{1,64}}){{0,4}}"
_DOMAIN = (
    rf"[a-z0-9][\w-]{{0,62}}(?:(?:{_DOT}|{_DASH})[\w-]{{1,63}}){{0,3}}{_DOT}(?:{_TLDS})\b"
    rf"|(?:{_MAIL_PROVIDERS})\b"  # a mail provider's name alone: "john at gmail"
)
_NOT_BEFORE = r"(?<![\w+.'’-])"

# Repetitions are bounded so that no text makes these take more than linear time.
_EMAIL = re.compile(rf"(?<![\w.+-])[\w.%+-]{{1,64}}@[\w-]{{1,63}}(?:{_DOT}[\w-]{{1,63}}){{0,4}}\b")
_SPOKEN_EMAIL = re.compile(rf"{_NOT_BEFORE}(?P<local>{_LOCAL}){_AT}(?:{_DOMAIN})", re.IGNORECASE)
_NOT_LOCAL = frozenset(
    "us me you him her them it this that home work here there least all once which what who"
    " arrive arrives arrived be is are was were out in on up off stay meet order shop buy look"
    " available sold open closed".split()
)
"""Words before "at ... dot com" that make it a sentence, not an address ("visit us at ...")."""
_CUE = r"\be-?mail(?:\s+address)?(?:\s+(?:is|was)|'s|:|\s+(?:me|us)\s+at)\s+"
"""Words that introduce the caller's own address: "my email is", "email me at"."""
_NAME_BEFORE = re.compile(
    rf"({_CUE})(?:(?!(?:at|to|is|was)\b)[a-z]+\s+){{1,2}}"
    rf"(?={re.escape(EMAIL)})",
    re.IGNORECASE,
)
"""Words left between "my email is" and the address found there were part of it: "my email is
jane doe at gmail dot com" is one address, not "jane" and an address."""

_HOST = re.compile(
    rf"{_NOT_BEFORE}(?P<host>[a-z0-9][\w+-]{{0,63}}(?:\.[\w+-]{{1,63}}){{0,3}}"
    rf"(?:\.(?:{_TLDS})|\s+dot\s+(?:{_TLDS})(?<!\bat|\bbe|\bin|\bit|\bme|\bno|\bus))"
    rf"(?:{_DOT}(?:uk|au|nz|za|jp|in|br))?)\b(?![@-]|\.\w)",
    re.IGNORECASE,
)
"""Something that reads as a web address ("example.com", "shop dot co dot uk"). An email address
whose "at" the recognizer ran into the words around it ("janeedexample.com",
"jane.dowatexample.com") reads the same. Spoken top-level domains that are English words ("dot
in", "dot it") are not taken without an "at"."""
_GLUED = re.compile(rf"\w(?:{_MAIL_PROVIDERS})(?:\.|\s+dot\s+)", re.IGNORECASE)
"""A mail provider's name with more before it in the same word: "johnatgmail.com"."""
_EMAIL_CUE = re.compile(
    rf"(?:{_CUE}|\baddress\s+is\s+|\b(?:send|sent|forward|mail|write)\b[^.?!]{{0,40}}\bto\s+)$",
    re.IGNORECASE,
)
"""Words just before a web address that make it an email address: "my email is ...", "email me
at ...", "send the receipt to ..."; not "an email from ..."."""
_CUE_CHARS = 80
"""How far before a web address or a number its cue may be."""


def _spoken_email(match: re.Match[str]) -> str:
    if "@" in match["at"]:
        return EMAIL
    first = re.split(r"\W", match["local"], maxsplit=1)[0].lower()
    if first in _NOT_LOCAL or first.isdigit():
        return match[0]
    return EMAIL


def _host(match: re.Match[str]) -> str:
    """A web address is an email address when it cannot be a web address (an underscore or a
    "+", a mail provider's name glued to more), or when the words before it talk of email."""
    host = match["host"]
    if host.lower().startswith("www."):
        return host
    if "_" in host or "+" in host or _GLUED.search(host):
        return EMAIL
    if _EMAIL_CUE.search(match.string, max(0, match.start() - _CUE_CHARS), match.start()):
        return EMAIL
    return host


# ------------------------------------------------------------------ digits said as words

_ONES = {word: str(value) for value, word in enumerate(ONES[:10])} | {"oh": "0"}
_TEENS = {word: str(value) for value, word in enumerate(ONES[10:], 10)}
_TENS = {word: str(value) for value, word in enumerate(TENS[2:], 2)}
_ONE = "|".join(_ONES)
_TOKEN = (
    rf"(?:(?:double|triple)\s+)?(?:{_ONE})\b"
    rf"|(?:{'|'.join(_TEENS)})\b"
    rf"|(?:{'|'.join(_TENS)})(?:[\s-]+(?!oh\b)(?:{_ONE})\b)?\b"
    r"|hundred\b"
    r"|\d+"
)
"""One piece of a number said digit by digit: "four", "double five", "twelve", "forty five",
"hundred" (after a digit: "one eight hundred"), or digits the recognizer wrote as such."""
_SPOKEN_DIGITS = re.compile(
    rf"(?<![\w.])(?:plus\s+)?(?:{_TOKEN})(?:[\s,.-]+(?:{_TOKEN})){{1,40}}\b", re.IGNORECASE
)
_SPOKEN_TOKEN = re.compile(
    rf"(?:(double|triple)\s+)?({_ONE})\b"
    rf"|({'|'.join(_TEENS)})\b"
    rf"|({'|'.join(_TENS)})(?:[\s-]+(?!oh\b)({_ONE})\b)?"
    r"|(hundred)\b"
    r"|(\d+)",
    re.IGNORECASE,
)


def _spoken_digits(match: re.Match[str]) -> str:
    """A run of digits said as words ("five five five, one two three ...") that makes a card or
    phone number. Runs with fewer than three number words are left to the digit rules."""
    digits, words = "", 0
    for repeat, one, teen, tens, tens_one, hundred, written in _SPOKEN_TOKEN.findall(match[0]):
        if written:
            digits += written
            continue
        words += 1
        if one:
            digits += _ONES[one.lower()] * {"double": 2, "triple": 3}.get(repeat.lower(), 1)
        elif teen:
            digits += _TEENS[teen.lower()]
        elif tens:
            digits += _TENS[tens.lower()][0] + (_ONES[tens_one.lower()] if tens_one else "0")
        elif hundred:
            digits += "00"
    if words < 3:
        return match[0]
    if is_card(digits):
        return CARD
    low, high = PHONE_DIGITS
    if low <= len(digits) <= high:
        return PHONE
    return NUMBER if len(digits) > high else match[0]


# ------------------------------------------------------------------ digits

_DIGIT_RUN = re.compile(r"(?<![\w.,])\d+(?:(?:[ \t]*[-.,][ \t]*|[ \t]+)\d+)*")
_PHONE = re.compile(
    r"(?<![\w+#$€£¥%./,:-])"
    r"(?:\+[ ]?\d{1,3}[ .-]?|\d{1,3}[ .-]?(?=\())?"  # country code
    r"(?:\(\d{1,5}\)[ .-]?)?"  # (area code)
    r"\d{1,15}(?:(?:[ .-]|,[ ]?)\d{1,15})*"
    r"(?![\w%]|[.,]\d)"
)
_NOT_PHONE = re.compile(
    r"\d+\.\d+"  # a decimal number
    r"|\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}"  # a date
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # an IPv4 address
    r"|(?:19|20)\d\d(?:(?:[ -]|,[ ]?)(?:19|20)\d\d)+"  # years: "2023-2024", "2019, 2020"
    r"|\d{1,3}(?:,\d{3})*,000"  # a round amount: "8,000,000,000"
)
_NUMBER_NAMED = re.compile(
    r"\b(?:order|invoice|tracking|serial|model|sku|ticket|case|confirmation|receipt|reference"
    r"|ref|part|item|product|account|po|isbn|imei|version|firmware|build|release|error)\b"
    r"(?:\s*(?:number|no\.?|num|id|is|was|:|#))*"
    r"(?:\s+#?(?:(?=[\w-]*\d)[\w-]+|(?-i:[A-Z]{1,4})\b))*"  # its first parts: "1Z 999", "SN"
    r"\s*#?\s*$",
    re.IGNORECASE,
)
"""What comes before a number that is not a phone number ("order number 4418 2210")."""
_NAME_CHARS = 120
"""How far before a number its name may begin."""
_QUANTITY_AFTER = re.compile(
    r"\s*(?:dollars?|euros?|pounds?|rupees?|yen|yuan|pesos?|francs?|cents?|bucks|units?|items?"
    r"|pieces?|pcs|people|persons?|customers?|users?|times|hours?|minutes?|seconds?|days?"
    r"|weeks?|months?|years?|miles?|km|kg|lbs?|bytes|[kmgt]b|views|downloads|points|votes)\b",
    re.IGNORECASE,
)
"""What comes after a number that is a quantity ("3596923 items", "1,250,000,000 dollars")."""
_LIST = re.compile(r"(?=.*\b\d\b)(?=.*\b\d\d\b)\d{1,2}(?: \d{1,2})+")
"""Small numbers of one and two digits, mixed: a list ("3 9 21 26 28 35"); a phone number said
digit by digit or in pairs keeps to one."""
_PHONE_CUE = re.compile(
    r"\b(?:phone|mobile|cell|telephone|landline|fax|whatsapp|call|ring|text|dial|reach)\b"
    r"|\bmy\s+number\b",
    re.IGNORECASE,
)
"""Words before a number written with commas that make it a phone number: "my phone number is
5,551,234"."""


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
    """A phone number, or a longer run of digits, unless it reads as an ordinary number."""
    number = match[0]
    digits = sum(char.isdigit() for char in number)
    low, high = PHONE_DIGITS
    if digits < low or _NOT_PHONE.fullmatch(number):
        return number
    if "," in number and not number.startswith("+"):
        if any(len(re.sub(r"\D", "", group)) < 3 for group in number.split(",")[1:]):
            return number  # a list: "sizes 43, 55, 65, 75"
        cue = _PHONE_CUE.search(match.string, max(0, match.start() - _CUE_CHARS), match.start())
        if digits < COMMA_PHONE_DIGITS and not cue:
            return number
    if _LIST.fullmatch(number):
        return number
    if not number.startswith("+"):
        text = match.string
        named = _NUMBER_NAMED.search(text, max(0, match.start() - _NAME_CHARS), match.start())
        if named or _QUANTITY_AFTER.match(text, match.end()):
            return number
    return PHONE if digits <= high else NUMBER


# ------------------------------------------------------------------ the whole


def redact(text: str) -> str:
    """`text` with email addresses, card numbers (Luhn-checked), phone numbers and longer digit
    runs replaced by `EMAIL`, `CARD`, `PHONE` and `NUMBER`."""
    text = _EMAIL.sub(EMAIL, text)
    text = _SPOKEN_EMAIL.sub(_spoken_email, text)
    text = _HOST.sub(_host, text)
    text = _NAME_BEFORE.sub(r"\1", text)
    text = _SPOKEN_DIGITS.sub(_spoken_digits, text)
    text = _DIGIT_RUN.sub(_cards_in_run, text)
    return _PHONE.sub(_phone, text)


def redact_values(value: Any, redact_text: Callable[[str], str] = redact) -> Any:
    """`value` with every string in it redacted, through dicts (their values, not their keys),
    lists and tuples. Numbers are left as they are (JSON numbers there are counts, ids and
    times more often than a phone number). For what a caller or a carrier sends along with a
    call: its caller id, its metadata, Twilio's parameters."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_values(item, redact_text) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_values(item, redact_text) for item in value)
    return value


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
