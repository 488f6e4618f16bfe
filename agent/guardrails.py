"""Guardrails enforced in code, whatever produced the answer.

Each rule has a stable name, recorded in ``AnswerEnd.rules`` when it fires:

- ``prompt_injection`` (question): attempts to change or reveal the agent's instructions get a
  fixed refusal that reveals nothing. No handoff: the caller may go on with a real question,
  and a handoff would reward the attempt with a human.
- ``human_request`` (question): the caller asks for a person -> handoff at once.
- ``price`` (question and answer): prices change and are never spoken; a question about a
  price, or an answer sentence stating an amount of money, becomes :data:`PRICE_MESSAGE`.
- ``out_of_scope``: the KB does not answer the question (decided by the agent from retrieval
  confidence) -> the settings' handoff message, handoff.
- ``unknown_contact`` (answer): a phone number, email address, street address or person's name
  that is not in the KB is replaced by "our support team".
- ``advice`` (question and answer): health, legal or financial topics get
  :data:`ADVICE_DISCLAIMER` after the answer.

The question checks work on raw transcripts (any case, with or without punctuation). The
answer checks take one sentence at a time, so they also apply to a streaming LLM backend.
Everything here is pure and thread-safe; the patterns are heuristics, listed so they can be
reviewed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from agent.normalize import word_list

PROMPT_INJECTION = "prompt_injection"
HUMAN_REQUEST = "human_request"
PRICE = "price"
OUT_OF_SCOPE = "out_of_scope"
UNKNOWN_CONTACT = "unknown_contact"
ADVICE = "advice"

INJECTION_REFUSAL = "I can only help with questions about our products and services."
HUMAN_HANDOFF_MESSAGE = "Of course. I'm transferring you to a colleague now."
PRICE_MESSAGE = "Please check the product page for the current price."
ADVICE_DISCLAIMER = "This is general information, not professional advice."
CONTACT_REPLACEMENT = "our support team"

_INJECTION = re.compile(
    "|".join(
        [
            r"\b(ignore|disregard|forget|override|bypass)\b(\s\w+){0,4}\s"
            r"(instructions?|rules|prompts?|guidelines|directions|programming|guardrails|restrictions)\b",
            r"\bsystem (prompt|message|instructions?)s?\b",
            r"\b(initial|original|hidden|secret|internal) (prompt|instructions?|rules)\b",
            r"\b(reveal|show|print|repeat|read|recite|tell) (me |us )?(your|the) "
            r"(prompt|instructions|rules|configuration|guidelines)\b",
            r"\bpretend (you are|youre|to be|that you|you were)\b",
            r"\brole ?play",
            r"\byou are now\b|\bfrom now on you\b",
            r"\bact as (if|though|my|an? (different|new|unrestricted))",
            r"\b(developer|dev|god|admin|debug|unrestricted|dan) mode\b",
            r"\bjailbreak|\bdo anything now\b",
            r"\bnew (instructions|rules|persona)\b",
            r"\bwhat (were|are) you (told|instructed|programmed)\b",
        ]
    )
)

_HUMAN = re.compile(
    "|".join(
        [
            r"\b(talk|speak|chat)( to| with)( a| an| the| some| your)?( real| live| actual)? "
            r"(human|person|agent|representative|rep|operator|someone|somebody|manager|supervisor)\b",
            r"\b(transfer|connect|put) me (to|through|with)\b",
            r"\b(want|need|get) (me )?(a|an|to)( real| live)? "
            r"(human|agent|representative|operator|person)\b",
            r"\b(real|live|actual) (person|human)\b",
        ]
    )
)
_HUMAN_WORDS = frozenset(word_list("agent human representative operator person someone"))
_FILLER = frozenset(word_list("a an the please um uh just now real live customer service i"))

_PRICE_QUESTION = re.compile(
    r"\b(how much (is|are|does|do|did|will|would|for)|prices?|priced|pricing|costs?|cheap\w*|"
    r"expensive|discounts?|on sale)\b"
)
_NOT_A_PRICE = re.compile(
    r"\b(ship\w*|deliver\w*|return\w*|pick ?up|repairs?|warranty|refund\w*|trade ?in|"
    r"how much (time|longer|power|energy|data|space|storage|bandwidth))\b"
)
_MONEY = re.compile(
    r"[$€£¥]\s?\d|\b\d[\d,.]*\s?(dollars?|euros?|pounds?|usd|eur|gbp|bucks|cents?)\b|"
    r"\b(one|two|three|four|five|six|seven|eight|nine|ten|twenty|thirty|forty|fifty|hundred|"
    r"thousand)\s(dollars?|euros?|bucks)\b",
    re.IGNORECASE,
)
_ADVICE = re.compile(
    r"\b(health\w*|medical|medicine|medication|doctor|symptoms?|illness|sick|disease|asthma|"
    r"allerg\w*|pregnan\w*|headaches?|injur\w*|poison\w*|diagnos\w*|"
    r"legal|lawyer|attorney|lawsuit|sue|liability|illegal|"
    r"invest\w*|tax|taxes|loans?|mortgage|credit score|financial advice|deduct\w*)\b",
    re.IGNORECASE,
)

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d\s().-]{5,}\d(?![\w-]|\.\d)")
_DOTTED_QUAD = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_YEAR_RANGE = re.compile(r"^\d{4}\s*-\s*\d{4}$")
_ADDRESS = re.compile(
    r"\b\d{1,5}\s(?:[A-Z][\w'-]*\s){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|"
    r"Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Square|Sq|Parkway|Highway)\b"
    r"|\bP\.?\s?O\.? Box \d+",
)
_NAME = r"[A-Z][a-z]+(?: [A-Z][a-z]+)?"
# (pattern, replacement): group "name" is what gets replaced when its words are not in the KB.
_NAMES = [
    (re.compile(r"(?P<name>\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.? " + _NAME + ")"), CONTACT_REPLACEMENT),
    (
        re.compile(
            r"\b(?i:ask for|speak to|speak with|talk to|talk with|contact|call|email|"
            r"named|my name is|manager|technician|colleague) (?P<name>" + _NAME + ")"
        ),
        CONTACT_REPLACEMENT,
    ),
    (
        re.compile(
            "(?P<name>" + _NAME + r") (?:from|at|in|on) (?:our|the) (?:support|service|"
            r"customer|sales|technical|returns|help)"
        ),
        "someone",
    ),
]


@dataclass(frozen=True)
class Verdict:
    """A question answered by a rule instead of the KB."""

    rule: str
    reply: str
    handoff: bool


def flatten(text: str) -> str:
    """Lowercase words separated by single spaces: how a transcript is matched against rules."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", re.sub(r"['’]", "", text.lower())).split())


def check_question(question: str) -> Verdict | None:
    """The rule that answers this question by itself, if any (first match wins)."""
    flat = flatten(question)
    if _INJECTION.search(flat):
        return Verdict(PROMPT_INJECTION, INJECTION_REFUSAL, handoff=False)
    if asks_for_human(flat):
        return Verdict(HUMAN_REQUEST, HUMAN_HANDOFF_MESSAGE, handoff=True)
    if _PRICE_QUESTION.search(flat) and not _NOT_A_PRICE.search(flat):
        return Verdict(PRICE, PRICE_MESSAGE, handoff=False)
    return None


def asks_for_human(flat: str) -> bool:
    """True for "can i talk to someone", "agent please", "representative"."""
    if _HUMAN.search(flat):
        return True
    rest = [w for w in flat.split() if w not in _FILLER]
    return 0 < len(rest) <= 2 and any(w in _HUMAN_WORDS for w in rest)


def touches_advice(text: str) -> bool:
    """True when the text is about health, legal or financial matters."""
    return _ADVICE.search(text) is not None


@dataclass(frozen=True)
class CheckedSentence:
    """One answer sentence after the output checks."""

    text: str
    """What may be spoken (possibly rewritten)."""
    rules: tuple[str, ...]
    """The rules that changed it or flagged it."""


class OutputGuard:
    """Checks answer sentences against one KB's text. Immutable: share it across calls."""

    def __init__(self, kb_text: str) -> None:
        self._text = kb_text.lower()
        self._words = frozenset(re.findall(r"[a-z]+", self._text))
        self._emails = frozenset(m.group(0).lower() for m in _EMAIL.finditer(kb_text))
        self._phones = frozenset(
            d for m in _PHONE.finditer(kb_text) if (d := _phone_digits(m.group(0)))
        )

    def check(self, sentence: str) -> CheckedSentence:
        """Apply ``price``, ``unknown_contact`` and ``advice`` to one sentence."""
        if _MONEY.search(sentence):
            return CheckedSentence(PRICE_MESSAGE, (PRICE,))
        rules: list[str] = []
        text = sentence
        for replace in (self._emails_out, self._phones_out, self._addresses_out, self._names_out):
            text, changed = replace(text)
            if changed and UNKNOWN_CONTACT not in rules:
                rules.append(UNKNOWN_CONTACT)
        text = text[:1].upper() + text[1:]
        if touches_advice(text):
            rules.append(ADVICE)
        return CheckedSentence(text, tuple(rules))

    def _emails_out(self, text: str) -> tuple[str, bool]:
        return _replace(_EMAIL, text, lambda s: s.lower() in self._emails)

    def _phones_out(self, text: str) -> tuple[str, bool]:
        def known(s: str) -> bool:
            digits = _phone_digits(s)
            return digits is None or any(p.endswith(digits) for p in self._phones)

        return _replace(_PHONE, text, known)

    def _addresses_out(self, text: str) -> tuple[str, bool]:
        return _replace(_ADDRESS, text, lambda s: s.lower().rstrip(".") in self._text)

    def _names_out(self, text: str) -> tuple[str, bool]:
        changed = False
        for pattern, replacement in _NAMES:
            for match in reversed(list(pattern.finditer(text))):
                words = re.findall(r"[A-Za-z]+", match.group("name"))
                if all(w.lower() in self._words for w in words):
                    continue
                text = text[: match.start("name")] + replacement + text[match.end("name") :]
                changed = True
        return text, changed


def _phone_digits(candidate: str) -> str | None:
    """The digits of a phone number, or None when the match is not one (an IP, years)."""
    stripped = candidate.strip()
    if _DOTTED_QUAD.match(stripped) or _YEAR_RANGE.match(stripped):
        return None
    digits = re.sub(r"\D", "", stripped)
    return digits if len(digits) >= 7 else None


def _replace(
    pattern: re.Pattern[str], text: str, allowed: Callable[[str], bool]
) -> tuple[str, bool]:
    changed = False
    for match in reversed(list(pattern.finditer(text))):
        if not allowed(match.group(0)):
            text = text[: match.start()] + CONTACT_REPLACEMENT + text[match.end() :]
            changed = True
    return text, changed
