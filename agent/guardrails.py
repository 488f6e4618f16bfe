"""Guardrails enforced in code, whatever produced the answer.

Each rule has a stable name, recorded in `AnswerEnd.rules` when it fires:

- `prompt_injection` (question): attempts to change or reveal the agent's instructions get a
  fixed refusal that reveals nothing. No handoff: the caller may go on with a real question,
  and a handoff would reward the attempt with a human.
- `human_request` (question): the caller asks for a person -> handoff at once.
- `personal_contact` (question): the caller asks for a person's own phone number, address or
  email ("the manager's home number") -> handoff; nobody's private details are given out.
- `price` (question and answer): a price the KB states is spoken, followed by the settings'
  `price_note` (the current price is on the website); an amount of money the KB does not
  state is never spoken: its sentence becomes `PRICE_MESSAGE`. A price question the KB
  does not answer gets the settings' `price_message`.
- `out_of_scope`: the KB does not answer the question (decided by the agent from retrieval)
  -> the settings' handoff message, handoff. Small talk and requests beside any company's
  service (`off_topic`: a forecast, a match result, how a competitor compares, a job) that the
  KB does not clearly answer are handed off at once, without asking again.
- `not_understood` / `clarify`: the agent asked the caller to say it again (a transcript
  speech recognition doubted; a loose match) or to choose between two passages; a second
  miss is handed off (`out_of_scope`).
- `unknown_contact` (answer): a phone number, email address, street address or person's name
  that is not in the KB is replaced by "our support team".
- `advice` (question and answer): health, legal or financial topics get
  `ADVICE_DISCLAIMER` after the answer; a request for advice ("should I ...") that the
  KB does not clearly answer is handed off.

The question checks work on raw transcripts (any case, with or without punctuation). The
answer checks take one sentence at a time, so they also apply to a streaming LLM backend.
Everything here is pure and thread-safe; the patterns are heuristics, listed so they can be
reviewed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from agent.normalize import words
from text.words import is_filler, plain_words, word_list

PROMPT_INJECTION = "prompt_injection"
HUMAN_REQUEST = "human_request"
PRICE = "price"
OUT_OF_SCOPE = "out_of_scope"
UNKNOWN_CONTACT = "unknown_contact"
ADVICE = "advice"
PERSONAL_CONTACT = "personal_contact"
NOT_UNDERSTOOD = "not_understood"
CLARIFY = "clarify"

INJECTION_REFUSAL = "I can only help with questions about our products and services."
HUMAN_HANDOFF_MESSAGE = "Of course. I'm transferring you to a colleague now."
PRICE_MESSAGE = "I can't confirm that amount; the current price is always on our website."
PERSONAL_CONTACT_MESSAGE = (
    "I can't give out anyone's personal contact details, so I'm transferring you to a colleague."
)
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
            r"\b(ignore|disregard|forget)\b (everything|all|anything|whatever)\b(\s\w+){0,3}\s"
            r"(told|said|given|know|before|above|instructed|programmed)\b",
            r"\b(you are|youre) (now )?(a|an) (new|different|unrestricted|unfiltered|evil|free) "
            r"(assistant|ai|bot|model|chatbot)\b",
            r"\b(instructions|rules|prompt) (you were|were you|youve been|you have been) "
            r"(given|told|programmed)\b",
            r"\bwith (no|zero|out any) (rules|restrictions|limits|filters)\b|\bno rules at all\b",
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
_PADDING = frozenset(word_list("a an the please just now real live customer service i"))
"""Words around a bare request for a person ("a real person please") that leave it bare."""

_PRICE_QUESTION = re.compile(
    r"\b(how much( (is|are|does|do|did|will|would|should|for|to|extra|money|more)\b|\W*$)|"
    r"prices?|priced|pricing|costs?|cheap\w*|expensive|discounts?|on sale|"
    r"(is|are) there (a|an|any) (fee|charge)s?|(what|whats) (is |are )?the (fee|charge|rate)s?|"
    r"(do|would|will|gonna|going to) (you|they|i|we)( guys)? (be )?charge|"
    r"(you|they)( guys)? (gonna|going to|will|would) (be )?charg|"
    r"(get|be|being) charged|charge me|(is|are) (it|that|this|they) free|"
    r"what (would|will|do|does) (i|we|you|it|that|this) (pay|charge|run|cost)|"
    r"do i (have to )?pay (for|to|anything|extra))\b"
)
_PRICE_WORDS = re.compile(
    r"\b(costs?|fees?|prices?|priced|charges?|charged|pay|pays|paid|payable|rates?|tariffs?)\b",
    re.IGNORECASE,
)
"""A sentence about what something costs (not a limit or a credit stated in money)."""
_STATES_PRICE = re.compile(
    r"\b(free|no charge|no cost|no fee|free of charge|at no cost|without charge|"
    r"does not charge|do not charge|don'?t charge|included)\b",
    re.IGNORECASE,
)
_PERSONAL = re.compile(
    r"\b(home|personal|private|mobile|cell|own|direct)( phone)? (number|phone|address|email|"
    r"line)\b|\b(?<!on )(?<!in )(?<!from )(?<!with )(his|her|their) "
    r"(mobile|cell|number|phone|address|email)\b|"
    r"\bwhere (does|do) (the |your |that )?(?!you\b)(he|she|they|\w+) live\b"
)
_CALLERS_OWN = re.compile(r"\b(my|our)( own)? (home|personal|private|mobile|cell|direct)\b")
"""The caller's own details ("update my home address") are no one else's."""
_ADVICE_REQUEST = re.compile(
    r"\b(should i|should we|do you (recommend|suggest|think)|would you (recommend|suggest|advise)|"
    r"advise me|your advice|is it (a good idea|wise|worth|safe|legal|illegal|allowed)|"
    r"can i sue|could i sue|should i sue|am i (liable|entitled to sue)|"
    r"(take|taking) (\w+ ){1,3}to court|do i need an? (solicitor|lawyer|attorney)|"
    r"what should i (take|do about my)|which one should)\b"
)
_OFF_TOPIC = re.compile(
    "|".join(
        [
            r"\b(weather|forecast)\b",
            r"\b(going to|gonna|supposed to|meant to|will it|forecast to) (rain|snow|hail|"
            r"be (sunny|windy|cold|hot|warm|wet|dry|nice))\b",
            r"\b(did|who|which \w+) (\w+ ){0,3}(win|won|lose|lost|draw|drew|beat)\b",
            r"\b(less|more|cheaper|dearer|better|worse) than (you|your|yours)\b",
            r"\bcompared? (to|with) (you|your|yours)\b|\byou compare (to|with)\b",
            r"\b(apply|applying) for (a|the|that) job\b|\bjobs? (with|at) you\b|"
            r"\b(any|your) jobs\b|\b(vacanc\w+|careers?|hiring|recruit\w*)\b|"
            r"\b(work|working) for you\b",
            r"\bbecome an? (\w+ ){1,2}(with|for|at) you\b",
            r"\bany good\b",
            r"\b(which|what) (\w+ ){1,3}should (i|we) (go with|use|choose|pick|hire)\b",
        ]
    )
)
"""Small talk and requests beside any company's service: a forecast, a match result, how
another company compares, a job, which outside firm to pick."""
_ADVICE_TOPIC_REQUEST = re.compile(r"\bwhich (stocks?|shares|funds?|medicines?|pills?) should\b")
"""A request that names its health or money topic itself ("which stocks should I buy")."""
_CURRENCY_WORDS = r"dollars?|euros?|pounds?|usd|eur|gbp|bucks|cents?|pence"
_MONEY = re.compile(
    r"[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:" + _CURRENCY_WORDS + r")\b|"
    r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|"
    r"thirty|forty|fifty|hundred|thousand)\s(?:dollars?|euros?|pounds?|bucks)\b",
    re.IGNORECASE,
)
_SPELLED_MONEY = re.compile(
    r"\b((?:(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
    r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|"
    r"seventy|eighty|ninety|point)[\s-]?)+)(dollars?|euros?|pounds?|bucks|cents?|pence)\b",
    re.IGNORECASE,
)
_SCALE = re.compile(r"^\s*(hundred|thousand|million|billion|k|m|bn)\b", re.IGNORECASE)
_SCALES = {
    "hundred": 100,
    "thousand": 1e3,
    "k": 1e3,
    "million": 1e6,
    "m": 1e6,
    "billion": 1e9,
    "bn": 1e9,
}
_ADVICE = re.compile(
    r"\b(health\w*|medical|medicine|medication|doctor|symptoms?|illness|sick|disease|asthma|"
    r"allerg\w*|pregnan\w*|headaches?|injur\w*|poison\w*|diagnos\w*|"
    r"legal|lawyer|solicitor|attorney|lawsuit|sue|court|liability|illegal|"
    r"invest\w*|shares|stocks|tax|taxes|loans?|mortgage|credit score|financial advice|"
    r"deduct\w*)\b",
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
            "(?P<name>" + _NAME + r") (?:from|at|in|on) (?:our|the) (?:[a-z]+ ){1,2}"
            r"(?:team|department|desk|office|centre|center|line)"
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
    """The words of `text` (`text.words.plain_words`) separated by single spaces: how a
    transcript is matched against rules."""
    return " ".join(plain_words(text))


def check_question(question: str) -> Verdict | None:
    """The rule that answers this question by itself, if any (first match wins)."""
    flat = flatten(question)
    if _INJECTION.search(flat):
        return Verdict(PROMPT_INJECTION, INJECTION_REFUSAL, handoff=False)
    if asks_for_human(flat):
        return Verdict(HUMAN_REQUEST, HUMAN_HANDOFF_MESSAGE, handoff=True)
    if _PERSONAL.search(flat) and not _CALLERS_OWN.search(flat):
        return Verdict(PERSONAL_CONTACT, PERSONAL_CONTACT_MESSAGE, handoff=True)
    return None


def asks_price(question: str) -> bool:
    """True for "how much is ...", "what does it cost", "is there a fee for ..."; not for
    "how much time", "how much luggage"."""
    return _PRICE_QUESTION.search(flatten(question)) is not None


def about_price(sentence: str) -> bool:
    """True for a sentence about what something costs ("a fee of $5"), not for one that only
    states a limit or a credit in money ("up to $500 a day")."""
    return _PRICE_WORDS.search(sentence) is not None


def asks_advice(question: str) -> bool:
    """True for a request for a recommendation on a health, legal or financial matter ("should
    I sue", "which stocks should I buy"), as opposed to a question about a policy."""
    flat = flatten(question)
    if _ADVICE_TOPIC_REQUEST.search(flat):
        return True
    return touches_advice(flat) and _ADVICE_REQUEST.search(flat) is not None


def off_topic(question: str) -> bool:
    """True for small talk and requests no company's KB is for (the weather forecast, a match
    result, how another company compares, a job): handed off unless the KB clearly answers."""
    return _OFF_TOPIC.search(flatten(question)) is not None


def states_price(sentence: str) -> bool:
    """True when a sentence answers a price question: an amount of money, or "free"."""
    return _MONEY.search(sentence) is not None or _STATES_PRICE.search(sentence) is not None


def amounts(text: str) -> set[str]:
    """The amounts of money in a text, as plain numbers ("$4.50", "4.50 dollars" and "four
    dollars fifty" are not all the same; "$4.50" and "4.50 euros" both give "4.5")."""
    found = set()
    for match in _MONEY.finditer(_spelled_to_digits(text)):
        number = re.search(r"\d[\d,]*(?:\.\d+)?", match.group(0))
        value = float(number.group(0).replace(",", "")) if number is not None else math.nan
        scale = _SCALE.search(text[match.end() : match.end() + 12])
        if scale is not None:
            value *= _SCALES[scale.group(1).lower()]
        found.add(f"{value:g}")  # "nan" for an amount not read: in no KB, so never spoken
    return found


def _spelled_to_digits(text: str) -> str:
    """ "two dollars" -> "2 dollars": number words before a currency word become digits."""

    def digits(match: re.Match[str]) -> str:
        value = " ".join(words(match.group(1).replace("-", " ")))
        return f"{value} {match.group(2)}"

    return _SPELLED_MONEY.sub(digits, text)


def asks_for_human(flat: str) -> bool:
    """True for "can i talk to someone", "agent please", "representative"."""
    if _HUMAN.search(flat):
        return True
    rest = [w for w in flat.split() if w not in _PADDING and not is_filler(w)]
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
    priced: bool = False
    """It states a price from the KB: the answer owes the caller the price note."""


class OutputGuard:
    """Checks answer sentences against one KB's text. Immutable: share it across calls."""

    def __init__(self, kb_text: str) -> None:
        self._text = kb_text.lower()
        self._words = frozenset(re.findall(r"[a-z]+", self._text))
        self._emails = frozenset(m.group(0).lower() for m in _EMAIL.finditer(kb_text))
        self._phones = frozenset(
            d for m in _PHONE.finditer(kb_text) if (d := _phone_digits(m.group(0)))
        )
        self._amounts = amounts(kb_text)

    def check(self, sentence: str) -> CheckedSentence:
        """Apply `price`, `unknown_contact` and `advice` to one sentence."""
        priced = False
        if _MONEY.search(sentence) or _SPELLED_MONEY.search(sentence):
            if not amounts(sentence) <= self._amounts:
                return CheckedSentence(PRICE_MESSAGE, (PRICE,))
            priced = True
        rules: list[str] = [PRICE] if priced else []
        text = sentence
        for replace in (self._emails_out, self._phones_out, self._addresses_out, self._names_out):
            text, changed = replace(text)
            if changed and UNKNOWN_CONTACT not in rules:
                rules.append(UNKNOWN_CONTACT)
        text = text[:1].upper() + text[1:]
        if touches_advice(text):
            rules.append(ADVICE)
        return CheckedSentence(text, tuple(rules), priced)

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
