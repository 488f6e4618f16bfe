"""The KB's own words: names to keep capitalized, and hotwords for speech recognition."""

from __future__ import annotations

import re
from collections import Counter

from agent.kb import KnowledgeBase
from agent.normalize import STOPWORDS

# A run of capitalized words ("Acme Portal", "Gold Card", "Wi-Fi", "GHz", "CO2").
_CAPITALIZED_RUN = re.compile(r"\b[A-Z][\w-]*(?: [A-Z][\w-]*)*")
# Where a sentence or list item starts, a capital says nothing about the word.
_SENTENCE_START = re.compile(r"(?:^|[.!?:]\s+|\n\s*(?:\d+[.)]|[-*+])?\s*)$")
# A lowercase word that is not part of an email address or domain ("help@acme.example").
_LOWERCASE_WORD = re.compile(r"(?<![@.\w])[a-z][\w-]*\b(?![@.]\w)")


def proper_nouns(kb: KnowledgeBase, min_count: int = 2) -> frozenset[str]:
    """Brand and product names: words the KB capitalizes mid-sentence at least `min_count`
    times and never writes in lowercase ("Acme", "CO2"; not "Orders", a menu name)."""
    texts = _texts(kb)
    lowercase = {w for text in texts for w in _LOWERCASE_WORD.findall(text)}
    counts = Counter(w for text in texts for run, _ in _runs(text) for w in run.split())
    found = {w for w, n in counts.items() if n >= min_count and w.lower() not in lowercase}
    listed = {w for name in kb.vocabulary.names for w in name.split()}
    return frozenset(found | listed)


def hotwords(kb: KnowledgeBase, max_chars: int = 200, max_names: int = 6) -> str:
    """A comma-separated list of the KB's names and heading words.

    Meant for faster-whisper's `hotwords` / `initial_prompt`: it nudges recognition towards
    product names ("Acme", "Wi-Fi") and the topics of the manuals ("refund", "timetable").
    First the names listed in `vocabulary.yaml`, then the `max_names` names found in the
    most passages, then heading words, then the other names; at most `max_chars`
    characters (about 50 tokens for 200), cut between terms.
    """
    heading_words = {w.lower() for p in kb.passages for w in re.findall(r"[\w-]+", p.heading)}
    name_df: Counter[str] = Counter()
    for text in _texts(kb):
        name_df.update({w for run, _ in _runs(text) for w in run.split()})
    for name in name_df:  # names the headings talk about are the products
        name_df[name] += 3 * (name.lower() in heading_words)
    names = [w for w, _ in name_df.most_common()]
    heading_df: Counter[str] = Counter(
        w.lower()
        for p in kb.passages
        for w in set(re.findall(r"[A-Za-z][a-z-]{3,}", p.heading))
        if w.lower() not in STOPWORDS
    )
    topics = [w for w, _ in heading_df.most_common()]
    out: list[str] = []
    seen: set[str] = set()
    listed = list(kb.vocabulary.names)
    for term in [*listed, *names[:max_names], *topics, *names[max_names:]]:
        if term.lower() in seen:
            continue
        if len(", ".join([*out, term])) > max_chars:
            break
        seen.add(term.lower())
        out.append(term)
    return ", ".join(out)


def _texts(kb: KnowledgeBase) -> list[str]:
    return [p.text for p in kb.passages] + [f.answer for f in kb.faqs]


def _runs(text: str) -> list[tuple[str, int]]:
    """Capitalized runs found mid-sentence in one text, with their offsets."""
    found: list[tuple[str, int]] = []
    for match in _CAPITALIZED_RUN.finditer(text):
        run = match.group(0)
        if _SENTENCE_START.search(text[: match.start()]):
            words = run.split(" ", 1)
            if len(words) == 1:
                continue
            run = words[1]  # "Open Acme Portal" at a sentence start -> "Acme Portal"
        found.append((run, match.start()))
    return found
