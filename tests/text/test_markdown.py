"""`text.markdown`: the one way Markdown marks come out, for speech and for the agent."""

from __future__ import annotations

import pytest

from agent.llm import ReplyFilter
from agent.speech import plain
from text.markdown import LINE_MARKER, only_markers, strip_inline, strip_lines
from tts.normalize import normalize_for_speech


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("see [the app](https://example.com/app)", "see the app"),
        ("![a photo](photo.png)", "a photo"),
        ("**off** and *on* and __up__ and _down_", "off and on and up and down"),
        ("run `reset`", "run reset"),
        ("2 * 3 * 4 and snake_case", "2 * 3 * 4 and snake_case"),
    ],
)
def test_inline_marks(text: str, stripped: str) -> None:
    assert strip_inline(text) == stripped


@pytest.mark.parametrize(
    ("line", "rest"),
    [
        ("## Reset", "Reset"),
        ("> - quoted item", "quoted item"),
        ("12) Step", "Step"),
        ("-5 C", "-5 C"),
    ],
)
def test_line_markers(line: str, rest: str) -> None:
    assert LINE_MARKER.sub("", line) == rest


def test_lines_join_into_sentences() -> None:
    assert strip_lines("# Reset\n\n1. Unplug it\n2. Wait, then plug it in.") == (
        "Reset. Unplug it. Wait, then plug it in."
    )


@pytest.mark.parametrize("text", ["1.", "-", "> ##", "  "])
def test_only_markers(text: str) -> None:
    assert only_markers(text)


@pytest.mark.parametrize("text", ["1.5", "#1", "10. Open", "a"])
def test_not_only_markers(text: str) -> None:
    assert not only_markers(text)


def test_the_kb_the_model_and_the_voice_lose_the_same_marks() -> None:
    text = "**Hold** the [reset button](https://example.com) for `10` seconds."
    expected = "Hold the reset button for 10 seconds."
    assert plain(text) == expected
    reply = ReplyFilter()
    assert reply.feed(text + " ") + reply.finish() == [expected]
    assert normalize_for_speech(text) == "Hold the reset button for ten seconds."
