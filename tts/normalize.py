"""Written answer text to the words Piper should say: numbers, times, money, dates, symbols.

`normalize_for_speech` runs an ordered list of rewrite rules; each turns one kind of written
token (a URL, a date, "$19.99", "4pm") into words before later, more general rules (plain
numbers, lone symbols) could misread its parts. Everything is pure and thread-safe.

Reading choices a listener may notice:
  * Numeric dates: "15/03/2024" is day-first because 15 cannot be a month; when both fields
    could be the month ("03/04/2024") the US order (month first) wins, matching the en_US
    voice; dotted dates ("03.04.2024") are always day-first, as only Europe writes those.
  * A four-digit number reads as a year ("twenty twenty-four") only next to a month, after
    words like "in"/"since"/"by", in a year pair ("2019 to 2024") or as a decade ("1990s");
    elsewhere it is a plain number ("two thousand twenty-four").
  * "9:30" stays "nine thirty"; only clock times that must be 24-hour ("16:00", "09:30",
    "0:15") gain "a m"/"p m".
  * Runs of seven or more digits, numbers written with a leading zero, and phone numbers are
    read digit by digit; phone groups are separated by commas, i.e. short pauses.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from text.markdown import strip_inline, strip_lines
from text.words import TENS
from tts.numbers import (
    decimal_words,
    digit_words,
    int_words,
    number_words,
    ordinal_words,
    say_number,
    year_words,
)

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


# ----------------------------------------------------------------------------- rule helpers

_NUM = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?"
_MONTH_NAMES = {m[:3]: m for m in _MONTHS} | {m: m for m in _MONTHS} | {"Sept": "September"}
_MONTH = "|".join(sorted(_MONTH_NAMES, key=len, reverse=True))

Rule = tuple["re.Pattern[str]", Callable[["re.Match[str]"], str]]


def _rule(pattern: str, replace: Callable[[re.Match[str]], str] | str, flags: int = 0) -> Rule:
    compiled = re.compile(pattern, flags | re.ASCII)
    if isinstance(replace, str):
        text = replace
        return compiled, lambda m: m.expand(text)
    return compiled, replace


def _sentence_period(m: re.Match[str]) -> str:
    """ "." when the match swallowed a period that also ended the sentence ("at 4 p.m.")."""
    if not m.group(0).endswith("."):
        return ""
    rest = m.string[m.end() :]
    return "." if not rest.strip() or re.match(r"\s+[\"'(]?[A-Z]", rest) else ""


def _pad(m: re.Match[str], words: str) -> str:
    """Keep replacement words apart from letters glued to the match ("v2" → "v two")."""
    before = m.string[m.start() - 1] if m.start() else " "
    after = m.string[m.end()] if m.end() < len(m.string) else " "
    left = " " if before.isalnum() and words[:1].isalnum() else ""
    right = " " if after.isalnum() and words[-1:].isalnum() else ""
    return left + words + right


# ----------------------------------------------------------------------------- rules


def _say_address(text: str) -> str:
    text = re.sub(r"^(?:https?://)?(?:www\.)?", "", text, flags=re.IGNORECASE)
    text = re.split(r"[?#]", text)[0].rstrip("/")
    for symbol, word in (
        ("@", "at"),
        (".", "dot"),
        ("/", "slash"),
        ("-", "dash"),
        ("_", "underscore"),
        ("+", "plus"),
        ("~", "tilde"),
    ):
        text = text.replace(symbol, f" {word} ")
    return " ".join(text.split())


def _url(m: re.Match[str]) -> str:
    url = m.group(0)
    trail = url[len(url.rstrip(".,;:!?)")) :]
    return _say_address(url[: len(url) - len(trail)]) + trail


_TLD = "com|org|net|io|co|uk|us|ca|de|fr|eu|info|biz|app|dev|ai|gov|edu|tv|nl|au"
_ADDRESSES: list[Rule] = [
    _rule(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", lambda m: _say_address(m.group(0))),
    _rule(
        rf"(?:https?://|www\.)[\w-]+(?:\.[\w-]+)+(?:/\S*)?|(?<![\w@./-])[\w-]+(?:\.[\w-]+)*"
        rf"\.(?:{_TLD})(?![\w-])(?:/\S*)?",
        _url,
        re.IGNORECASE,
    ),
]


def _abbreviation(m: re.Match[str]) -> str:
    written = m.group(0)
    word = _ABBREVIATIONS[written.lower().rstrip(".")]
    word = word[0].upper() + word[1:] if written[0].isupper() else word
    return word + (_sentence_period(m) if word.endswith("cetera") else "")


_ABBREVIATIONS = {
    "e.g": "for example",
    "eg": "for example",
    "i.e": "that is",
    "etc": "et cetera",
    "approx": "approximately",
    "vs": "versus",
    "w/o": "without",
    "w/": "with",
    "24/7": "twenty-four seven",
}
_DAYS = {
    "Mon": "Monday",
    "Tue": "Tuesday",
    "Tues": "Tuesday",
    "Wed": "Wednesday",
    "Thu": "Thursday",
    "Thur": "Thursday",
    "Thurs": "Thursday",
    "Fri": "Friday",
    "Sat": "Saturday",
    "Sun": "Sunday",
}
_DAY = "|".join(sorted(_DAYS, key=len, reverse=True))
_WORDS: list[Rule] = [
    _rule(
        r"(?<![\w.])(?:e\.g\.|eg\.|i\.e\.|etc\.|approx\.?|vs\.?)(?!\w)|(?<!\w)w/o?(?=\s)"
        r"|(?<![\w/])24/7(?![\w/])",
        _abbreviation,
        re.IGNORECASE,
    ),
    _rule(r"\bDr\.(?=\s+[A-Z])", "Doctor"),
    _rule(r"\bMr\.(?=\s)", "Mister"),
    _rule(r"\bMrs\.(?=\s)", "Missus"),
    _rule(
        rf"\b({_DAY})\.?\s?[-–—]\s?({_DAY})\b\.?",
        lambda m: f"{_DAYS[m[1]]} to {_DAYS[m[2]]}" + _sentence_period(m),
    ),
    _rule(
        r"(?<![A-Za-z])(?:(Mon|Tues?|Wed|Thu|Thurs?|Fri)|(Sat|Sun)(?=\.?,?\s*[0-9]))"
        r"(?![A-Za-z])\.?",
        lambda m: _DAYS[m[1] or m[2]] + _sentence_period(m),
    ),
    _rule(r"#([0-9]{4,})(?![0-9.,])", lambda m: f"number {digit_words(m[1])}"),
    _rule(r"\b[Nn]o\.\s?(?=[0-9])|#(?=[0-9])", "number "),
    _rule(r"\b[Ee]xt\.?\s?([0-9]{1,6})\b", lambda m: f"extension {digit_words(m[1])}"),
]


def _date(year: int | None, month: int, day: int, day_first: bool = False) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    spoken = (
        f"the {ordinal_words(day)} of {_MONTHS[month - 1]}"
        if day_first
        else f"{_MONTHS[month - 1]} {ordinal_words(day)}"
    )
    return spoken + (f", {year_words(year)}" if year is not None else "")


def _numeric_date(m: re.Match[str]) -> str:
    first, sep, second, year_text = int(m[1]), m[2], int(m[3]), m[4]
    year = int(year_text) + (2000 if len(year_text) == 2 else 0)
    day_first = sep == "." or (first > 12 >= second)
    month, day = (second, first) if day_first else (first, second)
    return _date(year, month, day) or m.group(0)


def _named_date(m: re.Match[str], day_first: bool = False) -> str:
    month = _MONTHS.index(_MONTH_NAMES[m["month"]]) + 1
    year = int(m["year"]) if m["year"] else None
    return _date(year, month, int(m["day"]), day_first) or m.group(0)


_DATES: list[Rule] = [
    _rule(
        r"(?<![0-9.,])([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?![0-9]|[-.][0-9])",
        lambda m: _date(int(m[1]), int(m[2]), int(m[3])) or m.group(0),
    ),
    _rule(
        r"(?<![0-9/.,])([0-9]{1,2})([/.])([0-9]{1,2})\2([0-9]{4}|[0-9]{2})(?![0-9]|[/.][0-9])",
        _numeric_date,
    ),
    _rule(
        rf"\b(?P<month>{_MONTH})\.?\s+(?P<day>[0-9]{{1,2}})(?:st|nd|rd|th)?(?![0-9:])"
        rf"(?:,?\s+(?P<year>[0-9]{{4}})(?![0-9]))?",
        _named_date,
    ),
    _rule(
        rf"\b(?P<day>[0-9]{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month>{_MONTH})\b\.?"
        rf"(?:,?\s+(?P<year>[0-9]{{4}})(?![0-9]))?",
        lambda m: _named_date(m, day_first=True),
    ),
    _rule(
        rf"\b({_MONTH})\.?,?\s+([0-9]{{4}})(?![0-9])",
        lambda m: f"{_MONTH_NAMES[m[1]]} {year_words(int(m[2]))}",
    ),
]


def _phone(m: re.Match[str]) -> str:
    written = m.group(0)
    if sum(c.isdigit() for c in written) < 7:
        return written
    groups = re.findall(r"\+?[0-9]+", written)
    return ", ".join(("plus " if g[0] == "+" else "") + digit_words(g) for g in groups)


def _time(hour: int, minute: int, suffix: str) -> str:
    words = number_words(hour)
    if minute:
        words += f" {'oh ' if minute < 10 else ''}{number_words(minute)}"
    return f"{words} {suffix}".strip()


def _clock(m: re.Match[str]) -> str:
    """ "4pm", "4:30 p.m.", "16:00"; a time that fits no clock is left as written."""
    hour, minute, half = int(m["hour"]), int(m["minute"] or 0), m["half"]
    if minute > 59 or hour > (12 if half else 23) or (half and hour == 0):
        return m.group(0)
    if half:
        return _time(hour, minute, f"{half.lower()} m") + _sentence_period(m)
    if 1 <= hour <= 12 and not m["hour"].startswith("0"):
        return _time(hour, minute, "")  # could be either clock: no a m / p m
    return _time(hour % 12 or 12, minute, "a m" if hour < 12 else "p m")


_YEAR = r"(?:1[0-9]{3}|20[0-9]{2})"
_NOT_MORE = r"(?![0-9]|[.,][0-9])"
_TIMES: list[Rule] = [
    _rule(
        rf"(?<![\w.,])({_YEAR})(?:\s?[-–—]\s?|\s+(to|and|through|or)\s+)({_YEAR}){_NOT_MORE}",
        lambda m: f"{year_words(int(m[1]))} {m[2] or 'to'} {year_words(int(m[3]))}",
    ),
    _rule(
        r"(?<![\w.+-])(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{2,5}\)\s?)?[0-9]{1,5}"
        r"(?:[.-][0-9]{2,5}){1,4}(?![\w]|[.-][0-9])",
        _phone,
    ),
    _rule(
        r"(?<![\w.+-])(?:\+[0-9]{1,3}|\([0-9]{2,5}\)|0[0-9]{2,4})(?:[ .-]?[0-9]{2,5}){2,4}"
        r"(?![\w]|[.-][0-9])",
        _phone,
    ),
    _rule(
        rf"(?<![\w.,/:])([$€£¥]?(?:{_NUM})(?::[0-9]{{2}})?(?:\s?[AaPp]\.?[Mm]\.?)?)"
        r"\s?[-–—]\s?(?=[$€£¥]?[0-9])",
        r"\1 to ",
    ),
    _rule(
        r"(?<![\w.:])(?P<hour>[0-9]{1,2})(?::(?P<minute>[0-9]{2}))?\s?(?P<half>[AaPp])\.?\s?"
        r"[Mm](?!\w)\.?",
        _clock,
    ),
    _rule(
        r"(?<![\w.:])(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})(?P<half>)(?![0-9]|:[0-9])", _clock
    ),
]

_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
}
_MONEY_SCALES = {
    "k": "thousand",
    "thousand": "thousand",
    "m": "million",
    "million": "million",
    "bn": "billion",
    "b": "billion",
    "billion": "billion",
}


def _money(symbol: str, amount: str, scale: str | None) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    whole, _, cents_text = amount.replace(",", "").partition(".")
    if scale:
        return f"{decimal_words(amount)} {_MONEY_SCALES[scale.lower()]} {many}"
    if len(cents_text) > 2 or (cents_text and not sub_one):
        return f"{decimal_words(amount)} {many}"
    cents = int(cents_text.ljust(2, "0") or 0)
    parts = []
    if whole.strip("0") or not cents:
        parts.append(f"{int_words(whole or '0')} {one if whole.lstrip('0') == '1' else many}")
    if cents:
        parts.append(f"{number_words(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


_UNITS = {
    "GHz": "gigahertz",
    "MHz": "megahertz",
    "kHz": "kilohertz",
    "Hz": "hertz",
    "Gbps": "gigabit per second",
    "Mbps": "megabit per second",
    "kbps": "kilobit per second",
    "TB": "terabyte",
    "GB": "gigabyte",
    "MB": "megabyte",
    "KB": "kilobyte",
    "kB": "kilobyte",
    "mAh": "milliamp hour",
    "kWh": "kilowatt hour",
    "kW": "kilowatt",
    "W": "watt",
    "V": "volt",
    "dB": "decibel",
    "kg": "kilogram",
    "g": "gram",
    "lb": "pound",
    "lbs": "pound",
    "oz": "ounce",
    "km/h": "kilometer per hour",
    "mph": "mile per hour",
    "km": "kilometer",
    "cm": "centimeter",
    "mm": "millimeter",
    "ft": "foot",
    "ms": "millisecond",
    "sec": "second",
    "secs": "second",
    "min": "minute",
    "mins": "minute",
    "hr": "hour",
    "hrs": "hour",
    "h": "hour",
    "s": "second",
    "yr": "year",
    "yrs": "year",
    "px": "pixel",
    "x": "times",
}
_UNIT = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_ALONE_UNITS = ("GHz", "MHz", "kHz", "Gbps", "Mbps", "kbps", "kWh", "mAh")
_PER = {
    "month": "month",
    "mo": "month",
    "year": "year",
    "yr": "year",
    "week": "week",
    "wk": "week",
    "day": "day",
    "hour": "hour",
    "hr": "hour",
    "night": "night",
    "person": "person",
    "user": "user",
    "seat": "seat",
    "device": "device",
    "line": "line",
}
_FRACTIONS = {
    "1/2": "one half",
    "1/3": "one third",
    "2/3": "two thirds",
    "1/4": "one quarter",
    "3/4": "three quarters",
}


def _unit_name(singular: str, one: bool) -> str:
    """ "megabit per second" → "megabits per second", "kilowatt hour" → "kilowatt hours"."""
    if one or singular == "times" or singular.endswith("hertz"):
        return singular
    if singular == "foot":
        return "feet"
    words = singular.split()
    at = 0 if "per" in words else -1
    words[at] = _plural(words[at])
    return " ".join(words)


def _unit(m: re.Match[str]) -> str:
    one = m[1].lstrip("-−") == "1"
    return f"{say_number(m[1])} {_unit_name(_UNITS[m[2]], one)}{_sentence_period(m)}"


def _degrees(m: re.Match[str]) -> str:
    scale = {"C": " Celsius", "F": " Fahrenheit"}.get(m[2] or "", "")
    if not m[1]:
        return f"degrees{scale}"
    one = m[1].lstrip("-−") == "1"
    return f"{say_number(m[1])} {'degree' if one else 'degrees'}{scale}"


def _slash_numbers(m: re.Match[str]) -> str:
    if "." in m[1]:  # "4.5/5": a rating
        return f"{decimal_words(m[1])} out of {number_words(int(m[2]))}"
    first, second = int(m[1]), int(m[2])
    if m.group(0) in _FRACTIONS:
        return _FRACTIONS[m.group(0)]
    if 1 <= first <= 12 and 13 <= second <= 31:  # "3/15": a US month/day
        return f"{_MONTHS[first - 1]} {ordinal_words(second)}"
    return f"{number_words(first)} out of {number_words(second)}"


def _decade(m: re.Match[str]) -> str:
    words = year_words(int(m[1])) if m[1] else TENS[int(m[2][0])]
    return _plural(words) if words.endswith("y") else words + "s"


_SIGNED = rf"(?:(?<![\w.,])[-−])?(?:{_NUM})"
_AMOUNTS: list[Rule] = [
    _rule(
        r"(?<![\w.])'?(1[0-9][0-9]0|20[0-9]0)'?s\b|(?:(?<=the )|(?<=early )|(?<=late )"
        r"|(?<=mid-)|')([2-9]0)'?s\b",
        _decade,
        re.IGNORECASE,
    ),
    _rule(r"~\s?(?=[-−$€£¥0-9])|≈\s?", "about "),
    _rule(r"<\s?(?=[-−$€£¥0-9])", "less than "),
    _rule(r">\s?(?=[-−$€£¥0-9])", "more than "),
    _rule(
        rf"([$€£¥])\s?({_NUM})(?:\s?(k|thousand|million|billion|m|bn|b)(?![\w]))?",
        lambda m: _money(m[1], m[2], m[3]),
        re.IGNORECASE,
    ),
    _rule(rf"(?<![\w.])({_NUM})\s?€", lambda m: _money("€", m[1], None)),
    _rule(rf"({_SIGNED})\s?%", lambda m: f"{say_number(m[1])} percent"),
    _rule(rf"({_SIGNED})?\s?°\s?([CF])?(?![A-Za-z])", _degrees),
    _rule(rf"(?<![\w.])({_SIGNED})\s?({_UNIT})(?!\w)(?:\.(?=\s|$))?", _unit),
    _rule(
        rf"(?<![A-Za-z])({'|'.join(_ALONE_UNITS)})(?![A-Za-z])",
        lambda m: _unit_name(_UNITS[m[1]], one=False),
    ),
    _rule(rf"\s?/\s?({'|'.join(_PER)})\b\.?", lambda m: f" per {_PER[m[1]]}" + _sentence_period(m)),
    _rule(r"(?<![\w./])([0-9]{1,3}(?:\.[0-9])?)/([0-9]{1,3})(?![\w/]|\.[0-9])", _slash_numbers),
    _rule(r"(?<=[A-Za-z])/(?=[A-Za-z])", " "),
]
_NUMBERS: list[Rule] = [
    _rule(
        r"(?<![\w.])([0-9]{1,9})(?:st|nd|rd|th)\b",
        lambda m: ordinal_words(int(m[1])),
        re.IGNORECASE,
    ),
    _rule(
        rf"(?i:\b(in|since|from|until|till|by|before|after|of|during|year|circa|around|copyright))"
        rf"\s+({_YEAR}){_NOT_MORE}",
        lambda m: f"{m[1]} {year_words(int(m[2]))}",
    ),
    _rule(rf"{_SIGNED}(?:\.[0-9]+)*(?![0-9])", lambda m: say_number(m.group(0))),
]
_SYMBOLS: list[Rule] = [
    _rule(r"\s+[-–—>]+\s+|[—–]", ", "),
    _rule(r"&", " and "),
    _rule(r"@", " at "),
    _rule(r"\+", " plus "),
    _rule(r"=", " equals "),
    _rule(r"×", " times "),
    _rule(r"%", " percent "),
    _rule(r"\|", ", "),
    _rule(r"[*`_#^\\/<>~]+", " "),
    _rule(r"(?<!\w)-+|-+(?!\w)", " "),
]
_CLEANUP: list[Rule] = [
    _rule(r"\s+", " "),
    _rule(r"\s+([,.;:!?)])", r"\1"),
    _rule(r"\(\s+", "("),
    _rule(r"([,;:])(?:\s*[,;:])+", r"\1"),
    _rule(r"[,;:]\s*([.!?])", r"\1"),
    _rule(r"^[\s,;:.]+", ""),
]
_RULES = [*_ADDRESSES, *_WORDS, *_DATES, *_TIMES, *_AMOUNTS, *_NUMBERS, *_SYMBOLS]


def normalize_for_speech(text: str) -> str:
    """`text` as the words a TTS voice should say, on one line; "" when nothing is left.

    "Open 9am–4:30pm, $5 off!" → "Open nine a m to four thirty p m, five dollars off!"
    """
    text = strip_inline(strip_lines(text))
    for rule in _RULES:
        text = _apply(rule, text)
    for pattern, replace in _CLEANUP:
        text = pattern.sub(replace, text)
    return text.strip()


def _apply(rule: Rule, text: str) -> str:
    pattern, replace = rule
    return pattern.sub(lambda m: _pad(m, replace(m)), text)
