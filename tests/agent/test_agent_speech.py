"""Written text to spoken sentences: Markdown blocks, steps, sentence splitting."""

from __future__ import annotations

from agent.speech import (
    Block,
    SentenceBuffer,
    blocks,
    lower_first,
    plain,
    split_sentences,
    spoken_steps,
)


def test_blocks_separate_steps_from_sentences_and_strip_markup() -> None:
    markdown = (
        "A bulb that **flashes red** could not connect.\n"
        "See [the app](https://example.com).\n\n"
        "1. Use 2.4 GHz Wi-Fi\n"
        "2) Hold the button for 5 seconds.\n"
        "- Works with `Devices > Add Device`\n"
        "### Still red?\n"
        "Call support."
    )
    assert blocks(markdown) == [
        Block("sentence", "A bulb that flashes red could not connect."),
        Block("sentence", "See the app."),
        Block("step", "Use 2.4 GHz Wi-Fi."),
        Block("step", "Hold the button for 5 seconds."),
        Block("sentence", "Works with Devices, then Add Device."),
        Block("sentence", "Still red?"),
        Block("sentence", "Call support."),
    ]


def test_plain_reads_menus_aloud() -> None:
    assert plain("Go to *Settings* > Network") == "Go to Settings, then Network"


def test_split_sentences_keeps_decimals_and_abbreviations() -> None:
    assert split_sentences("Use e.g. the app. Use 2.4 GHz! Mr. Lee is in. Done") == [
        "Use e.g. the app.",
        "Use 2.4 GHz!",
        "Mr. Lee is in.",
        "Done.",
    ]


def test_spoken_steps_use_ordinals() -> None:
    assert spoken_steps(["Do a.", "Do b.", "Do c.", "Do d.", "Do e."]) == [
        "First, do a.",
        "Then, do b.",
        "Next, do c.",
        "After that, do d.",
        "Finally, do e.",
    ]
    assert spoken_steps(["Do a.", "Do b."]) == ["First, do a.", "Finally, do b."]
    assert spoken_steps(["Do a."]) == ["Do a."]


def test_lower_first_keeps_names_and_acronyms() -> None:
    names = frozenset({"Brightnest"})
    assert lower_first("Make sure.", names) == "make sure."
    assert lower_first("Brightnest bulbs.", names) == "Brightnest bulbs."
    assert lower_first("DHCP works.", names) == "DHCP works."
    assert lower_first("Wi-Fi works.", names) == "Wi-Fi works."
    assert lower_first("I can.", names) == "I can."


def test_sentence_buffer_yields_sentences_as_they_complete() -> None:
    buffer = SentenceBuffer()
    assert buffer.feed("Hello there. Use 2") == ["Hello there."]
    assert buffer.feed(".4 GHz Wi-Fi. Then") == ["Use 2.4 GHz Wi-Fi."]
    assert buffer.feed(" restart") == []
    assert buffer.flush() == "Then restart"
    assert buffer.flush() is None
