"""Redaction on what speech recognition writes: recall on card numbers, phone numbers and email
addresses, and how often ordinary numbers are redacted by mistake.

Run: python bench/redaction.py [--seed 2026] [--per-form 25] [--markdown FILE] [--misses 5]

Every case is a caller's sentence made from a seeded random generator: a frame ("you can call me
back on {} after 5 pm") around a random entity written in one of the forms a recognizer produces
(a card number as "4,111,111,111,111,111", a phone number as "five five five, one two three...",
an email as "jane dot doe at gmail dot com" or glued into "janeedgmail.com"). The ordinary
numbers (prices, times, quantities, dates, versions, addresses, named order numbers, web
addresses) come in frames of their own and must come out unchanged.

A case is redacted when the sentence comes out as its frame with only placeholders where the
entity was: a number redacted in part ("[phone] 4567") is a miss. "as its kind" counts the cases
redacted with their own placeholder ([card] for a card). An ordinary sentence is a false
positive when anything in it changes.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from text.words import TENS  # noqa: E402
from tts.numbers import digit_words, number_words  # noqa: E402
from voice.office.redact import luhn_valid, redact  # noqa: E402

SEED = 2026
PER_FORM = 25


@dataclass(frozen=True)
class Case:
    kind: str
    """"card", "phone", "email", or "ordinary" (must be left alone)."""
    form: str
    """How the entity is written ("commas", "spoken", "glued"...)."""
    before: str
    entity: str
    after: str

    @property
    def text(self) -> str:
        return self.before + self.entity + self.after


@dataclass(frozen=True)
class Row:
    kind: str
    form: str
    cases: int
    redacted: int
    """Positive cases redacted whole; ordinary cases changed (false positives)."""
    as_kind: int
    example: str
    """A miss (or a false positive), for reading."""


# ------------------------------------------------------------------ frames

CARD_FRAMES = [
    "my card number is {}",
    "{}",
    "ok the card is {} and the expiry is 04/27",
    "can you charge it to {} please",
    "yeah it's {}, the name on it is Jane",
    "I'd like to pay with my visa, {}, thanks",
    "sure. {}.",
    "the long number on the front is {} I think",
]
PHONE_FRAMES = [
    "my number is {}",
    "{}",
    "you can call me back on {} after 5 pm",
    "it's {}, that's my mobile",
    "text me at {} please",
    "the best number to reach me is {}.",
    "I called from {} twice this week",
    "yes my cell is {} and my order is on the way",
]
EMAIL_FRAMES = [
    "my email is {}",
    "{}",
    "you can email me at {}",
    "send the receipt to {} please",
    "it's {}, thanks",
    "my email address is {}.",
    "the account is under {} I think",
    "yes it's {} and I bought it 3 weeks ago",
]

FIRST = (
    "jane john maria li ahmed sofia raj emma liam olga chen fatima noah grace omar ana david"
    " priya lucas mei kofi sara tom nina".split()
)
LAST = (
    "doe smith garcia nguyen khan rossi patel brown kowalski silva murphy tanaka okafor lee"
    " johnson muller dubois walker".split()
)
PROVIDERS = [
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "icloud.com",
    "aol.com",
    "protonmail.com",
    "hotmail.co.uk",
    "yahoo.co.uk",
    "gmx.de",
]
WORDS = (
    "bright lane north field river stone acme blue harbor oak summit delta pioneer maple green"
    " valley metro cedar swift coastal union".split()
)
TLDS = ["com", "com", "net", "org", "co.uk", "io", "de", "ca"]


def card_number(rng: random.Random) -> str:
    prefix, length = rng.choice(
        [("4", 16), ("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("34", 15)]
        + [("37", 15), ("6011", 16), ("65", 16), ("35", 16), ("4", 19)]
    )
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def card_groups(digits: str) -> list[str]:
    if len(digits) == 15:
        return [digits[:4], digits[4:10], digits[10:]]
    return [digits[i : i + 4] for i in range(0, len(digits), 4)]


def us_phone(rng: random.Random) -> list[str]:
    area = str(rng.randint(201, 989))
    return [area, str(rng.randint(200, 999)), f"{rng.randint(0, 9999):04d}"]


def uk_phone(rng: random.Random) -> list[str]:
    if rng.random() < 0.5:
        return ["07" + str(rng.randint(100, 999)), f"{rng.randint(0, 999999):06d}"]
    return ["020", str(rng.randint(7000, 8999)), f"{rng.randint(0, 9999):04d}"]


INTERNATIONAL = [
    ("+49", [2, 8]),
    ("+33", [1, 2, 2, 2, 2]),
    ("+61", [1, 4, 4]),
    ("+91", [5, 5]),
    ("+353", [1, 3, 4]),
    ("+34", [3, 2, 2, 2]),
    ("+81", [2, 4, 4]),
    ("+27", [2, 3, 4]),
]


def spoken_digits(digits: str, rng: random.Random, repeats: bool) -> str:
    """Digit by digit; zero as "oh" or "zero", runs as "double"/"triple" when `repeats`."""
    words = []
    i = 0
    while i < len(digits):
        run = 1
        while i + run < len(digits) and digits[i + run] == digits[i] and run < 3:
            run += 1
        word = "oh" if digits[i] == "0" and rng.random() < 0.5 else digit_words(digits[i])
        if repeats and run > 1:
            words.append(f"{'double' if run == 2 else 'triple'} {word}")
            i += run
        else:
            words.append(word)
            i += 1
    return " ".join(words)


def pair_words(pair: str) -> str:
    """ "45" → "forty five", "07" → "oh seven", "12" → "twelve"."""
    if pair[0] == "0":
        return "oh " + digit_words(pair[1])
    return number_words(int(pair)).replace("-", " ")


# ------------------------------------------------------------------ entities by form


def _card(form: str) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        digits = card_number(rng)
        groups = card_groups(digits)
        if form == "plain":
            return digits
        if form == "spaces":
            return " ".join(groups)
        if form == "hyphens":
            return "-".join(groups)
        if form == "dots":
            return ".".join(groups)
        if form == "commas":  # what faster-whisper writes for a long number said at once
            return f"{int(digits):,}"
        if form == "comma pauses":
            return ", ".join(groups)
        if form == "digit by digit":
            return rng.choice([" ", "-"]).join(digits)
        if form == "pairs":
            return " ".join(digits[i : i + 2] for i in range(0, len(digits), 2))
        if form == "spoken":
            return ", ".join(spoken_digits(g, rng, repeats=False) for g in groups)
        if form == "spoken repeats":
            return " ".join(spoken_digits(g, rng, repeats=True) for g in groups)
        if form == "mixed":
            return " ".join(
                g if rng.random() < 0.5 else spoken_digits(g, rng, False) for g in groups
            )
        raise ValueError(form)

    return make


def _phone(form: str) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        us = us_phone(rng)
        if form == "us written":
            a, b, c = us
            return rng.choice(
                [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"{a} {b} {c}", a + b + c]
                + [f"1 ({a}) {b}-{c}", f"1-{a}-{b}-{c}", f"{b}-{c}"]
            )
        if form == "uk written":
            return " ".join(uk_phone(rng))
        if form == "international":
            if rng.random() < 0.3:
                return rng.choice(["+1 ", "+1-"]) + "-".join(us)
            code, sizes = rng.choice(INTERNATIONAL)
            parts = ["".join(rng.choice("0123456789") for _ in range(n)) for n in sizes]
            parts[0] = str(rng.randint(1, 9)) + parts[0][1:]
            return code + " " + " ".join(parts)
        if form == "commas":  # a local number said at once: "5,551,234"
            return f"{int(''.join(us if rng.random() < 0.7 else us[1:])):,}"
        if form == "comma pauses":
            return ", ".join(us if rng.random() < 0.6 else uk_phone(rng))
        if form == "spoken":
            groups = us if rng.random() < 0.6 else uk_phone(rng)
            return ", ".join(spoken_digits(g, rng, repeats=False) for g in groups)
        if form == "spoken repeats":
            groups = us if rng.random() < 0.6 else uk_phone(rng)
            return " ".join(spoken_digits(g, rng, repeats=True) for g in groups)
        if form == "spoken pairs":  # "five five five, one two three, forty five sixty seven"
            a, b, c = us
            head = "one eight hundred" if rng.random() < 0.25 else spoken_digits(a, rng, False)
            return (
                f"{head}, {spoken_digits(b, rng, False)}, {pair_words(c[:2])} {pair_words(c[2:])}"
            )
        if form == "spoken international":
            code, sizes = rng.choice(INTERNATIONAL)
            digits = "".join(rng.choice("123456789") for _ in range(sum(sizes)))
            return f"plus {spoken_digits(code[1:], rng, False)} {spoken_digits(digits, rng, False)}"
        if form == "mixed":
            a, b, c = us
            return f"{a} {b} {spoken_digits(c, rng, False)}"
        raise ValueError(form)

    return make


def local_part(rng: random.Random) -> tuple[str, ...]:
    """An address's local part as its pieces and the separators between them."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return rng.choice(
        [
            (first,),
            (first, ".", last),
            (first, "_", last),
            (first[0], ".", last),
            (first + last,),
            (first + str(rng.randint(1, 99)),),
            (first, ".", last + str(rng.randint(70, 99))),
            (first, " ", last),  # said as two words; written as one
        ]
    )


def domain(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(PROVIDERS)
    name = rng.choice(WORDS) + rng.choice(["", "-"]) + rng.choice(WORDS)
    return f"{name}.{rng.choice(TLDS)}"


_SPOKEN_SEPARATOR = {".": " dot ", "_": " underscore ", "-": " dash "}


def _email(form: str) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        local, host = local_part(rng), domain(rng)
        written = "".join(local).replace(" ", "")
        if form == "written":
            return f"{written}@{host}"
        if form == "spoken":
            said = "".join(_SPOKEN_SEPARATOR.get(piece, piece) for piece in local)
            host = host.replace("-", " dash ") if rng.random() < 0.5 else host
            return f"{said} at {host.replace('.', ' dot ')}"
        if form == "half spoken":
            return rng.choice(
                [
                    f"{written} at {host}",
                    f"{written}@{host.replace('.', ' dot ')}",
                    f"{written} @ {host}",
                    f"{written} at {host.replace('.', ' dot ')}",
                ]
            )
        if form == "at the rate":
            said = "".join(_SPOKEN_SEPARATOR.get(piece, piece) for piece in local)
            return f"{said} at the rate {host.replace('.', ' dot ')}"
        if form == "glued":  # "at" run into the words around it: "janeedgmail.com"
            joint = rng.choice(["at", "ed", "et", "it", "add", "wat", "had"])
            return f"{written}{joint}{host}"
        raise ValueError(form)

    return make


POSITIVE: dict[str, tuple[list[str], list[str]]] = {
    "card": (
        CARD_FRAMES,
        [
            "plain",
            "spaces",
            "hyphens",
            "dots",
            "commas",
            "comma pauses",
            "digit by digit",
            "pairs",
            "spoken",
            "spoken repeats",
            "mixed",
        ],
    ),
    "phone": (
        PHONE_FRAMES,
        [
            "us written",
            "uk written",
            "international",
            "commas",
            "comma pauses",
            "spoken",
            "spoken repeats",
            "spoken pairs",
            "spoken international",
            "mixed",
        ],
    ),
    "email": (EMAIL_FRAMES, ["written", "spoken", "half spoken", "at the rate", "glued"]),
}
_MAKERS = {"card": _card, "phone": _phone, "email": _email}


# ------------------------------------------------------------------ ordinary numbers


def _money(rng: random.Random) -> str:
    amount = rng.choice([rng.randint(10, 999), rng.randint(1000, 99999), rng.randint(10**5, 10**7)])
    cents = f".{rng.randint(0, 99):02d}" if rng.random() < 0.4 else ""
    return rng.choice(
        [
            f"it cost ${amount:,}{cents}",
            f"I paid {amount:,} dollars for it",
            f"the invoice says £{amount:,}{cents}",
            f"a refund of €{amount:,}{cents} please",
            f"that's {amount:,} rupees, too much",
            f"the quote was {amount:,}.00 including tax",
        ]
    )


def _time(rng: random.Random) -> str:
    hour, minute = rng.randint(1, 12), rng.choice([0, 15, 30, 45, 5, 50])
    return rng.choice(
        [
            f"can someone come at {hour}:{minute:02d}",
            f"I'm free at {hour} pm tomorrow",
            f"between {hour} and {hour + rng.randint(1, 6)} on Monday",
            f"it stopped at {hour}:{minute:02d} am and again at {hour + 1}:{minute:02d}",
            f"the store closes at {hour}:{minute:02d} pm",
        ]
    )


def _quantity(rng: random.Random) -> str:
    count = rng.choice([rng.randint(2, 99), rng.randint(100, 9999), rng.randint(10**4, 10**7)])
    return rng.choice(
        [
            f"we need {count:,} units by Friday",
            f"I ordered {count:,} bulbs",
            f"there were {count:,} people on the waiting list",
            f"it says {count} items in stock",
            f"the battery lasts {count:,} hours",
            f"about {count:,} customers have the same problem",
        ]
    )


def _date(rng: random.Random) -> str:
    year, month, day = rng.randint(1990, 2027), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice(
        [
            f"I bought it in {year}",
            f"on {month:02d}/{day:02d}/{year}",
            f"delivered on {year}-{month:02d}-{day:02d} at 10:30",
            f"the warranty ends {day}.{month:02d}.{year}",
            f"on March {day}, {year} it broke",
            f"the {year}-{year + 1} model",
            f"since {year} I think, or {year + 1}",
        ]
    )


def _percent_size(rng: random.Random) -> str:
    return rng.choice(
        [
            f"a {rng.randint(5, 70)}% discount",
            f"it's {rng.randint(10, 99)}.{rng.randint(1, 9)} percent charged",
            f"the {rng.choice([32, 43, 55, 65, 75, 85])} inch one",
            f"it weighs {rng.randint(1, 40)}.{rng.randint(1, 9)} kg",
            f"{rng.randint(10, 200)} by {rng.randint(10, 200)} by {rng.randint(5, 90)} cm",
            f"the {rng.choice([128, 256, 512, 1024, 2048])} GB model",
            f"a {rng.choice([1920, 2560, 3840])} x {rng.choice([1080, 1440, 2160])} screen",
            f"it runs at {rng.randint(1, 5)}.{rng.randint(1, 9)} GHz",
        ]
    )


def _version(rng: random.Random) -> str:
    major, minor, patch = rng.randint(1, 20), rng.randint(0, 30), rng.randint(0, 300)
    return rng.choice(
        [
            f"version {major}.{minor}.{patch}",
            f"firmware {major}.{minor}.{patch}.{rng.randint(1000, 9999)}",
            f"it's on iOS {major}.{minor}",
            f"the app says build {major}.{minor}.{patch}",
            f"the router is on 192.168.{rng.randint(0, 9)}.{rng.randint(1, 254)}",
        ]
    )


def _address(rng: random.Random) -> str:
    street = rng.choice(["Baker Street", "Elm Avenue", "Main Street", "Ocean Drive", "High Road"])
    return rng.choice(
        [
            f"I live at {rng.randint(1, 9999)} {street}",
            f"it's {rng.randint(1, 999)} {street}, apartment {rng.randint(1, 40)}B",
            f"suite {rng.randint(100, 2500)}, {rng.randint(1, 999)} {street}",
            f"the zip code is {rng.randint(10000, 99999)}",
            f"deliver to {rng.randint(1, 300)} {street}, flat {rng.randint(1, 20)}",
        ]
    )


def _count(rng: random.Random) -> str:
    a, b = rng.randint(1, 9), rng.randint(2, 30)
    return rng.choice(
        [
            f"I've called {a} times in {b} days",
            f"{a} of the {b} bulbs don't work",
            "one or two of them, maybe three",
            f"it took {b} minutes and then {a} more",
            "two three four times a day",
            "I have one two three four lights",
            f"the {b}th of June",
        ]
    )


def _named_number(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([8, 10, 12])))
    spaced = " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    return rng.choice(
        [
            f"my order number is {spaced}",
            f"order #{digits}",
            f"tracking number 1Z{digits}",
            f"the invoice number is {digits[:4]}-{digits[4:]}",
            f"my ticket is {digits}",
            f"reference {spaced}",
        ]
    )


def _spoken_amount(rng: random.Random) -> str:
    return rng.choice(
        [
            f"{TENS[rng.randint(2, 9)]} five dollars",
            "two thousand twenty four",
            f"nineteen {TENS[rng.randint(2, 9)]} {digit_words(str(rng.randint(1, 9)))}",
            "one hundred and twenty pounds",
            f"it was {TENS[rng.randint(2, 9)]} {digit_words(str(rng.randint(1, 9)))} euros",
            "three or four times, maybe five",
            "at three thirty on the twenty second",
        ]
    )


def _website(rng: random.Random) -> str:
    site = rng.choice(WORDS) + rng.choice(WORDS)
    return rng.choice(
        [
            f"I ordered it on {site}.com",
            f"your website www.{site}.com says it's in stock",
            "I found it on amazon.com for less",
            f"the manual on {site}.co.uk is wrong",
            f"I saw it at {site} dot com",
            f"we're at {site}.com headquarters",
            f"I got an email from {site}.com about it",
            f"the mail from {site}.net went to spam",
        ]
    )


def _list_or_code(rng: random.Random) -> str:
    sizes = [str(rng.choice([24, 32, 40, 43, 50, 55, 65, 75, 85])) for _ in range(5)]
    small = sorted(rng.sample(range(1, 50), 6))
    return rng.choice(
        [
            f"do you have sizes {', '.join(sizes)}",
            f"rooms {rng.randint(100, 130)}, {rng.randint(131, 160)} and {rng.randint(161, 199)}",
            f"I need items {small[0]}, {small[1]}, {small[2]} and {small[3]}",
            f"the winning numbers were {' '.join(map(str, small))}",
            f"it shows error {rng.randint(10**7, 10**8 - 1)}",
            f"error code 0x{rng.randint(0x80000000, 0x8FFFFFFF):08X}",
            f"the serial is SN {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            f"the code on the box is {' '.join(str(rng.randint(0, 9)) for _ in range(4))}",
        ]
    )


ORDINARY: dict[str, Callable[[random.Random], str]] = {
    "prices": _money,
    "times": _time,
    "quantities": _quantity,
    "dates and years": _date,
    "percentages and sizes": _percent_size,
    "versions and IP addresses": _version,
    "street addresses": _address,
    "counts": _count,
    "named order numbers": _named_number,
    "amounts in words": _spoken_amount,
    "web addresses": _website,
    "lists and codes": _list_or_code,
}


def cases(seed: int = SEED, per_form: int = PER_FORM) -> list[Case]:
    """The benchmark's sentences: `per_form` of every entity form and of every kind of ordinary
    number, the same for the same seed."""
    rng = random.Random(seed)
    out = []
    for kind, (frames, forms) in POSITIVE.items():
        for form in forms:
            make = _MAKERS[kind](form)
            for _ in range(per_form):
                before, after = rng.choice(frames).split("{}")
                out.append(Case(kind, form, before, make(rng), after))
    for form, make_text in ORDINARY.items():
        for _ in range(per_form):
            out.append(Case("ordinary", form, "", make_text(rng), ""))
    return out


_PLACEHOLDERS = r"\[(?:card|phone|email)\]"


def redacted_whole(case: Case, out: str) -> bool:
    """The sentence is its frame with nothing but placeholders where the entity was."""
    middle = rf"{_PLACEHOLDERS}(?:[\s,.-]*{_PLACEHOLDERS})*"
    return re.fullmatch(re.escape(case.before) + middle + re.escape(case.after), out) is not None


def score(all_cases: list[Case], redactor: Callable[[str], str] = redact) -> list[Row]:
    groups: dict[tuple[str, str], list[Case]] = {}
    for case in all_cases:
        groups.setdefault((case.kind, case.form), []).append(case)
    rows = []
    for (kind, form), chosen in groups.items():
        hits = as_kind = 0
        example = ""
        for case in chosen:
            out = redactor(case.text)
            if kind == "ordinary":
                hit = out != case.text
                as_kind += hit
            else:
                hit = redacted_whole(case, out)
                as_kind += hit and f"[{kind}]" in out and out.count("[") == 1
            hits += hit
            if hit == (kind == "ordinary") and not example:
                example = f"{case.text!r} → {out!r}"
        rows.append(Row(kind, form, len(chosen), hits, as_kind, example))
    return rows


def totals(rows: list[Row]) -> dict[str, tuple[int, int]]:
    """Redacted (or, for "ordinary", changed) and cases, per kind and over all entities."""
    out: dict[str, tuple[int, int]] = {}
    for row in rows:
        for key in {row.kind, "entities" if row.kind != "ordinary" else "ordinary"}:
            done, count = out.get(key, (0, 0))
            out[key] = (done + row.redacted, count + row.cases)
    return out


def markdown(rows: list[Row]) -> str:
    lines = ["| kind | form | cases | redacted | as its kind |", "|---|---|---|---|---|"]
    for row in rows:
        if row.kind == "ordinary":
            continue
        lines.append(
            f"| {row.kind} | {row.form} | {row.cases} | {row.redacted / row.cases:.0%} "
            f"| {row.as_kind / row.cases:.0%} |"
        )
    sums = totals(rows)
    for kind in ("card", "phone", "email", "entities"):
        done, count = sums[kind]
        label = "all entities" if kind == "entities" else f"all {kind}s"
        lines.append(f"| **{label}** | | {count} | **{done / count:.1%}** | |")
    lines += ["", "| ordinary numbers | cases | redacted by mistake |", "|---|---|---|"]
    for row in rows:
        if row.kind == "ordinary":
            lines.append(f"| {row.form} | {row.cases} | {row.redacted} |")
    done, count = sums["ordinary"]
    lines.append(f"| **all** | {count} | **{done} ({done / count:.1%})** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--per-form", type=int, default=PER_FORM)
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--misses", type=int, default=0, help="show this many misses per form")
    args = parser.parse_args()
    all_cases = cases(args.seed, args.per_form)
    rows = score(all_cases)
    print(f"{'kind':9} {'form':26} {'cases':>5} {'redacted':>9} {'as kind':>8}  example miss")
    for row in rows:
        print(
            f"{row.kind:9} {row.form:26} {row.cases:5} {row.redacted / row.cases:9.0%} "
            f"{row.as_kind / row.cases:8.0%}  {row.example[:110]}"
        )
        if args.misses:
            shown = 0
            for case in all_cases:
                if (case.kind, case.form) != (row.kind, row.form) or shown >= args.misses:
                    continue
                out = redact(case.text)
                missed = (
                    out != case.text if case.kind == "ordinary" else not redacted_whole(case, out)
                )
                if missed:
                    print(f"        {case.text!r} → {out!r}")
                    shown += 1
    sums = totals(rows)
    done, count = sums["entities"]
    wrong, ordinary = sums["ordinary"]
    print(
        f"recall {done}/{count} = {done / count:.1%} (target ≥ 95%); "
        f"false positives {wrong}/{ordinary} = {wrong / ordinary:.1%} (target ≤ 2%)"
    )
    if args.markdown:
        args.markdown.write_text(markdown(rows), encoding="utf-8")


if __name__ == "__main__":
    main()
