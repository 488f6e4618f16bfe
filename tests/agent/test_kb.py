"""The KB loader: ids, passages, FAQ, and errors that name file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.kb import (
    FaqEntry,
    KbError,
    KnowledgeBase,
    KnowledgeBaseWatcher,
    Passage,
    Vocabulary,
    demo_kb_dir,
    load_kb,
    parse_vocabulary,
    slugify,
)

MANUAL = """\
# Troubleshooting Manual

Intro text that belongs to no passage.

## 4.2 Bulb flashes red

A bulb that flashes red could not connect.

1. Use 2.4 GHz.
2. Hold the button for 5 seconds.

### Still red?

Contact support.

## Shipping times & costs

Orders before 4 pm ship the same day.
"""

FAQ = """\
- id: returns
  questions:
    - Can I return it?
  answer: Within 7 days.
  source: manual#4.2
- id: 42
  questions: ["What is the answer?"]
  answer: Forty-two.
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_passages_get_ids_from_section_numbers_or_heading_slugs(tmp_path: Path) -> None:
    kb = load_kb(write(tmp_path, {"manual.md": MANUAL}))
    assert [p.id for p in kb.passages] == ["manual#4.2", "manual#shipping-times-costs"]
    first = kb.passages[0]
    assert first.title == "Troubleshooting Manual"
    assert first.heading == "Bulb flashes red"
    assert first.number == "4.2"
    assert first.line == 5
    assert first.file == tmp_path / "manual.md"
    assert "### Still red?" in first.text and "Intro text" not in first.text
    assert kb.passages[1].number is None


def test_faq_entries_get_faq_prefixed_ids_and_lines(tmp_path: Path) -> None:
    kb = load_kb(write(tmp_path, {"manual.md": MANUAL, "faq.yaml": FAQ}))
    assert [f.id for f in kb.faqs] == ["faq#returns", "faq#42"]
    assert kb.faqs[0].questions == ("Can I return it?",)
    assert kb.faqs[0].source == "manual#4.2"
    assert kb.faqs[1].line == 6
    assert isinstance(kb.get("faq#42"), FaqEntry)
    assert isinstance(kb.get("manual#4.2"), Passage)
    assert kb.passage("manual#4.2").number == "4.2"
    with pytest.raises(KeyError):
        kb.passage("faq#42")


def test_a_kb_of_only_faq_entries_loads(tmp_path: Path) -> None:
    kb = load_kb(write(tmp_path, {"faq.yaml": FAQ.replace("  source: manual#4.2\n", "")}))
    assert len(kb.faqs) == 2 and kb.passages == ()


@pytest.mark.parametrize(
    ("files", "where", "problem"),
    [
        ({"a.md": "## 1 Early\ntext\n"}, "a.md:1", "before the document's '# ' title"),
        ({"a.md": "hello\n# Title\n## x\ny\n"}, "a.md:1", "text before"),
        ({"a.md": "# T\n## 1 One\ntext\n# Again\n"}, "a.md:4", "second '# ' title"),
        ({"a.md": "# T\n## 1 One\n\n## 2 Two\ntext\n"}, "a.md:2", "has no text"),
        ({"a.md": "# T\n## 1 One\nx\n## 1 Again\ny\n"}, "a.md:4", "duplicate id 'a#1'"),
        ({"a.md": "# T\n\nonly an intro\n"}, "a.md:0", "no '## ' passages"),
        ({"a.md": "# T\n## !!!\nx\n"}, "a.md:2", "empty id"),
        ({"faq.yaml": "- id: x\n  questions: [q\n"}, "faq.yaml:", "bad YAML"),
        ({"faq.yaml": "- id: x\n  answer: y\n"}, "faq.yaml:1", "missing questions"),
        ({"faq.yaml": "- id: x\n  questions: q\n  answer: y\n"}, "faq.yaml:1", "non-empty list"),
        (
            {"faq.yaml": "- id: x\n  questions: [q]\n  answer: y\n  extra: 1\n"},
            "faq.yaml:1",
            "unknown FAQ keys: extra",
        ),
        ({"faq.yaml": "id: x\n"}, "faq.yaml:1", "expected a list"),
        ({"faq.yaml": "- a\n"}, "faq.yaml:1", "must be a mapping"),
        (
            {
                "faq.yaml": "- {id: x, questions: [q], answer: a}\n"
                "- {id: x, questions: [r], answer: b}\n"
            },
            "faq.yaml:2",
            "duplicate id 'faq#x'",
        ),
        (
            {"faq.yaml": "- {id: x, questions: [q], answer: a, source: nope#1}\n"},
            "faq.yaml:1",
            "is no passage id",
        ),
        ({}, "", "empty knowledge base"),
        ({"faq.yaml": ""}, "", "empty knowledge base"),
    ],
)
def test_malformed_files_raise_an_error_naming_file_and_line(
    tmp_path: Path, files: dict[str, str], where: str, problem: str
) -> None:
    with pytest.raises(KbError) as caught:
        load_kb(write(tmp_path, files))
    assert f"{tmp_path}/{where}" in str(caught.value) or where == ""
    assert problem in str(caught.value)


def test_bad_yaml_error_points_at_the_line(tmp_path: Path) -> None:
    text = "- id: a\n  questions: [q]\n  answer: fine\n- id: b\n  questions: [q]\n  answer: [\n"
    with pytest.raises(KbError) as caught:
        load_kb(write(tmp_path, {"faq.yaml": text}))
    assert caught.value.file == tmp_path / "faq.yaml"
    assert caught.value.line >= 6


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "manual.md").write_bytes(b"# Title\n## 1 One\n\xff\xfe\n")
    with pytest.raises(KbError, match=r"manual\.md:0: not UTF-8 text"):
        load_kb(tmp_path)


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KbError, match="not a directory"):
        load_kb(tmp_path / "nope")


def test_slugify() -> None:
    assert slugify("Shipping times & costs") == "shipping-times-costs"
    assert slugify("  Trade-In!  ") == "trade-in"


def test_the_demo_kb_loads_with_the_key_passages() -> None:
    kb = load_kb(demo_kb_dir())
    ids = {p.id for p in kb.passages}
    assert {
        "troubleshooting#4.2",
        "after-sales#1",
        "after-sales#2",
        "after-sales#3",
        "orders#shipping-times",
        "orders#trade-in",
        "network#2",
        "troubleshooting#6.1",
    } <= ids
    assert 20 <= len(kb.passages) <= 40
    assert len(kb.faqs) == 10
    bulb = kb.passage("troubleshooting#4.2")
    assert bulb.heading == "Bulb flashes red" and "2.4 GHz" in bulb.text


def test_watcher_reloads_on_change_and_keeps_the_last_good_kb(tmp_path: Path) -> None:
    manual = tmp_path / "manual.md"
    manual.write_text("# T\n## 1 One\nfirst\n", encoding="utf-8")
    reloaded: list[KnowledgeBase] = []
    watcher = KnowledgeBaseWatcher(tmp_path, on_reload=reloaded.append)
    assert watcher.reload_if_changed() is False

    manual.write_text("# T\n## 1 One\nsecond version\n", encoding="utf-8")
    bump(manual)
    assert watcher.reload_if_changed() is True
    assert watcher.current.passages[0].text == "second version"
    assert reloaded == [watcher.current]

    manual.write_text("## 1 Broken: no title\ntext\n", encoding="utf-8")
    bump(manual)
    assert watcher.reload_if_changed() is False
    assert watcher.current.passages[0].text == "second version"
    assert watcher.last_error is not None and "manual.md:1" in str(watcher.last_error)
    assert watcher.reload_if_changed() is False  # not retried until the files change again

    (tmp_path / "faq.yaml").write_text("- {id: a, questions: [q], answer: b}\n", "utf-8")
    manual.write_text("# T\n## 1 One\nfixed\n", encoding="utf-8")
    bump(manual)
    assert watcher.reload_if_changed() is True
    assert watcher.last_error is None and len(watcher.current.faqs) == 1


def test_watcher_refuses_to_start_on_a_broken_kb(tmp_path: Path) -> None:
    with pytest.raises(KbError):
        KnowledgeBaseWatcher(tmp_path)


def test_a_watcher_adopting_a_kb_reloads_once_then_on_changes(tmp_path: Path) -> None:
    manual = tmp_path / "manual.md"
    manual.write_text("# T\n## 1 One\nfirst\n", encoding="utf-8")
    kb = load_kb(tmp_path)
    reloaded: list[KnowledgeBase] = []
    watcher = KnowledgeBaseWatcher(tmp_path, on_reload=reloaded.append, current=kb)
    assert watcher.current is kb
    manual.write_text("# T\n## 1 One\nchanged before the first look\n", encoding="utf-8")
    assert watcher.reload_if_changed() is True
    assert reloaded[0].passages[0].text == "changed before the first look"
    assert watcher.reload_if_changed() is False


async def test_watch_polls_until_cancelled(tmp_path: Path) -> None:
    import asyncio

    manual = tmp_path / "manual.md"
    manual.write_text("# T\n## 1 One\nfirst\n", encoding="utf-8")
    watcher = KnowledgeBaseWatcher(tmp_path)
    task = asyncio.create_task(watcher.watch(interval_s=0.01))
    manual.write_text("# T\n## 1 One\nchanged\n", encoding="utf-8")
    bump(manual)
    for _ in range(200):
        if watcher.current.passages[0].text == "changed":
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watcher.current.passages[0].text == "changed"


VOCABULARY = """\
# A dental practice's own words.
names:
  - Smile
  - FlossPro
heard_as:
  flaws: floss
  404: four oh four
synonyms:
  braces: orthodontics
"""


def test_vocabulary_yaml_is_parsed_into_names_and_replacements(tmp_path: Path) -> None:
    kb = load_kb(write(tmp_path, {"manual.md": MANUAL, "vocabulary.yaml": VOCABULARY}))
    assert kb.vocabulary == Vocabulary(
        names=("Smile", "FlossPro"),
        heard_as={"flaws": "floss", "404": "four oh four"},
        synonyms={"braces": "orthodontics"},
    )
    assert kb.vocabulary.replacements == {
        "flaws": "floss",
        "404": "four oh four",
        "braces": "orthodontics",
    }


def test_a_kb_without_vocabulary_yaml_has_an_empty_one(tmp_path: Path) -> None:
    assert load_kb(write(tmp_path, {"manual.md": MANUAL})).vocabulary == Vocabulary()
    assert parse_vocabulary(tmp_path / "vocabulary.yaml", "# only a comment\n") == Vocabulary()


def test_the_demo_kb_brings_its_trade_words() -> None:
    vocabulary = load_kb(demo_kb_dir()).vocabulary
    assert "Brightnest" in vocabulary.names
    assert vocabulary.heard_as["wife i"] == "Wi-Fi"
    assert vocabulary.synonyms["blinking"] == "flashing"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("- floss\n", 1, "expected a mapping with names, heard_as and synonyms"),
        ("names: Smile\n", 1, "names must be a list of words"),
        ("names:\n  - Smile\n  - ''\n", 1, "names must be a list of words"),
        ("names: [Smile]\nheard_as:\n  - flaws\n", 2, "heard_as must map phrases to phrases"),
        ("synonyms:\n  braces: [orthodontics]\n", 1, "synonyms must map phrases to phrases"),
        (
            "names: [Smile]\nheard_as: {flaws: floss}\nhotwords: [Smile]\n",
            3,
            "unknown key 'hotwords' (known: names, heard_as, synonyms)",
        ),
        ("heard_as: {flaws: floss\n", 2, "bad YAML"),
    ],
)
def test_a_malformed_vocabulary_names_file_and_line(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    with pytest.raises(KbError) as caught:
        load_kb(write(tmp_path, {"manual.md": MANUAL, "vocabulary.yaml": text}))
    assert str(caught.value).startswith(f"{tmp_path / 'vocabulary.yaml'}:{line}: ")
    assert problem in caught.value.problem


def test_watcher_reloads_when_the_vocabulary_changes(tmp_path: Path) -> None:
    write(tmp_path, {"manual.md": MANUAL})
    watcher = KnowledgeBaseWatcher(tmp_path)
    assert watcher.current.vocabulary == Vocabulary()

    vocabulary = tmp_path / "vocabulary.yaml"
    vocabulary.write_text("heard_as: {flaws: floss}\n", encoding="utf-8")
    assert watcher.reload_if_changed() is True
    assert watcher.current.vocabulary.heard_as == {"flaws": "floss"}

    vocabulary.write_text("heard_as: {flaws: floss, lone: loan}\n", encoding="utf-8")
    bump(vocabulary)
    assert watcher.reload_if_changed() is True
    assert watcher.current.vocabulary.heard_as == {"flaws": "floss", "lone": "loan"}

    vocabulary.write_text("hotwords: [Smile]\n", encoding="utf-8")
    bump(vocabulary)
    assert watcher.reload_if_changed() is False  # the last good KB stays in service
    assert watcher.current.vocabulary.heard_as == {"flaws": "floss", "lone": "loan"}
    assert watcher.last_error is not None and "vocabulary.yaml:1" in str(watcher.last_error)


def bump(path: Path) -> None:
    """Move the modification time forward: a rewrite within one mtime tick must still count."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
