"""Prompt texts shipped with voicedesk, one Markdown file per prompt."""

from __future__ import annotations

import re
from importlib import resources


def load(name: str) -> str:
    """The text of ``prompts/<name>.md`` (e.g. ``load("guardrail")``).

    Raises:
        ValueError: ``name`` is not a plain prompt name.
        FileNotFoundError: there is no such prompt.
    """
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise ValueError(f"not a prompt name: {name!r}")
    path = resources.files(__name__) / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt named {name!r}")
    return path.read_text(encoding="utf-8")
