"""Markdown marks taken out of text that is to be read or spoken: the knowledge base's manuals
and what a language model writes. Links keep their text, emphasis and code lose their marks,
list markers, headings and quotes go.

Pure: safe to call from any thread.
"""

from __future__ import annotations

import re

_MARKER = r"(?:>\s*|(?:#{1,6}|[-*+•]|[0-9]{1,3}[.)])\s+)"
LINE_MARKER = re.compile(rf"^\s*{_MARKER}+", re.ASCII)
"""What starts a line and is no word: a heading's "#", a quote's ">", a bullet, a list number
("1." or "1)"), alone or nested ("> - ")."""
_ONLY_MARKERS = re.compile(rf"\s*{_MARKER}*(?:#{{1,6}}|[-*+•]|[0-9]{{1,3}}[.)])?\s*", re.ASCII)

_INLINE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"```[A-Za-z]*", re.ASCII), " "),
    (re.compile(r"!?\[([^\]]*)\]\([^)]*\)", re.ASCII), r"\1"),
    (re.compile(r"(\*\*|__)(.+?)\1", re.ASCII), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", re.ASCII), r"\1"),
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)", re.ASCII), r"\1"),
    (re.compile(r"`([^`]*)`", re.ASCII), r"\1"),
]


def strip_inline(text: str) -> str:
    """`text` without inline marks: "see [the app](https://…)" → "see the app", "**off**" →
    "off", "`reset`" → "reset". A lone "*" or "_" (in "2 * 3", "snake_case") stays."""
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return text


def only_markers(text: str) -> bool:
    """True when `text` holds line markers and nothing else ("1.", "-", "> ##"): what is left of
    a list item or a heading once a stream of text was cut after its marker."""
    return _ONLY_MARKERS.fullmatch(text) is not None


def strip_lines(text: str) -> str:
    """`text` as one line: list markers, headings and quotes go, and lines join with a period
    where none ended them."""
    lines = [LINE_MARKER.sub("", line).strip() for line in text.splitlines()]
    joined = ""
    for line in filter(None, lines):
        if joined:
            joined += " " if joined[-1] in ".!?,;:" else ". "
        joined += line
    return joined
