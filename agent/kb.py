"""The knowledge base: a directory of Markdown manuals plus an optional `faq.yaml`.

Markdown files (`*.md`, not recursive): the first `# ` heading is the document's title and
each `## ` heading starts a passage that runs to the next `## `. A leading section number in
the heading (`## 4.2 Meter shows an error`) becomes the passage's number, and its id is
`<file stem>#<number>` (`troubleshooting#4.2`); without a number the id is
`<file stem>#<slug of heading>` (`orders#shipping-times`). Deeper headings (`###`) stay in
the passage's text.

`faq.yaml` is a list of `{id, questions: [...], answer, source?}`; an entry's id is
`faq#<id>`, and `source` (optional) names the passage the answer comes from.

`vocabulary.yaml` (optional) holds what a company may tune without touching code: `names`
(product and brand names, for recognition and capitals), `heard_as` (what the speech
recognizer writes -> the KB's word) and `synonyms` (a caller's word -> the KB's word).

A malformed KB raises `KbError`, whose message starts with `file:line`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

FAQ_FILE = "faq.yaml"
VOCABULARY_FILE = "vocabulary.yaml"

_SECTION = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+(\S.*)$")


class KbError(Exception):
    """The knowledge base cannot be loaded; the message names the file and line."""

    def __init__(self, file: Path, line: int, problem: str) -> None:
        super().__init__(f"{file}:{line}: {problem}")
        self.file = file
        self.line = line
        """1-based; 0 when the problem is the whole file or directory."""
        self.problem = problem


@dataclass(frozen=True)
class Passage:
    """One `## ` section of a Markdown document."""

    id: str
    """`<file stem>#<section number>` or `<file stem>#<slug of heading>`."""
    title: str
    """The document's title (its `# ` heading)."""
    heading: str
    """The section heading without its number."""
    number: str | None
    """The section number (`"4.2"`), if the heading has one."""
    text: str
    """The section's Markdown body, stripped."""
    file: Path
    line: int
    """1-based line of the `## ` heading."""


@dataclass(frozen=True)
class FaqEntry:
    """One entry of `faq.yaml`."""

    id: str
    """`faq#<id>`."""
    questions: tuple[str, ...]
    answer: str
    source: str | None
    """Id of the passage the answer rests on, if given."""
    file: Path
    line: int


@dataclass(frozen=True)
class Vocabulary:
    """A company's own words, from `vocabulary.yaml`; empty when the KB has none."""

    names: tuple[str, ...] = ()
    """Product and brand names: hotwords for recognition, capitals kept in answers."""
    heard_as: dict[str, str] = field(default_factory=dict)
    """What the speech recognizer writes -> the word the KB uses ("wife i" -> "Wi-Fi")."""
    synonyms: dict[str, str] = field(default_factory=dict)
    """A caller's everyday word -> the word the KB uses ("blinking" -> "flashing")."""

    @property
    def replacements(self) -> dict[str, str]:
        return self.heard_as | self.synonyms


@dataclass(frozen=True)
class KnowledgeBase:
    """A loaded, validated KB. Immutable, so one instance can serve every call."""

    root: Path
    passages: tuple[Passage, ...]
    faqs: tuple[FaqEntry, ...]
    vocabulary: Vocabulary = field(default_factory=Vocabulary)

    _by_id: dict[str, Passage | FaqEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        entries: list[Passage | FaqEntry] = [*self.passages, *self.faqs]
        object.__setattr__(self, "_by_id", {e.id: e for e in entries})

    def get(self, entry_id: str) -> Passage | FaqEntry:
        """The passage or FAQ entry with this id; KeyError if there is none."""
        return self._by_id[entry_id]

    def passage(self, passage_id: str) -> Passage:
        """The passage with this id; KeyError if there is none (or it is an FAQ entry)."""
        entry = self.get(passage_id)
        if not isinstance(entry, Passage):
            raise KeyError(passage_id)
        return entry

    def all_text(self) -> str:
        """Every title, heading, passage, FAQ question and answer, one per line."""
        parts: list[str] = []
        for p in self.passages:
            parts += [p.title, p.heading, p.text]
        for f in self.faqs:
            parts += [*f.questions, f.answer]
        return "\n".join(parts)


def demo_kb_dir() -> Path:
    """The knowledge base bundled as the demo (the quick start's; see its own files)."""
    return Path(str(resources.files("agent.demo_kb")))


def slugify(text: str) -> str:
    """`"Shipping times & costs"` -> `"shipping-times-costs"`."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def load_kb(root: Path) -> KnowledgeBase:
    """Load and validate the KB in `root`.

    Raises:
        KbError: a file is malformed, two entries share an id, or the KB is empty.
    """
    if not root.is_dir():
        raise KbError(root, 0, "not a directory")
    passages: list[Passage] = []
    for path in sorted(root.glob("*.md")):
        passages += parse_markdown(path, _read(path))
    faq_path = root / FAQ_FILE
    faqs = parse_faq(faq_path, _read(faq_path)) if faq_path.exists() else []
    vocabulary_path = root / VOCABULARY_FILE
    vocabulary = (
        parse_vocabulary(vocabulary_path, _read(vocabulary_path))
        if vocabulary_path.exists()
        else Vocabulary()
    )
    if not passages and not faqs:
        raise KbError(root, 0, f"empty knowledge base: no passages in *.md and no {FAQ_FILE}")
    _check_unique([*passages, *faqs])
    passage_ids = {p.id for p in passages}
    for faq in faqs:
        if faq.source is not None and faq.source not in passage_ids:
            raise KbError(faq.file, faq.line, f"{faq.id}: source {faq.source!r} is no passage id")
    return KnowledgeBase(
        root=root, passages=tuple(passages), faqs=tuple(faqs), vocabulary=vocabulary
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise KbError(path, 0, f"not UTF-8 text: {err.reason} at byte {err.start}") from err
    except OSError as err:
        raise KbError(path, 0, f"cannot read: {err.strerror}") from err


def parse_markdown(path: Path, text: str) -> list[Passage]:
    """Split one Markdown document into passages (see the module docstring)."""
    title: str | None = None
    sections: list[tuple[int, str, list[str]]] = []  # (line, heading, body lines)
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("# "):
            if title is not None:
                raise KbError(path, number, "a second '# ' title; use '## ' for passages")
            title = _heading_text(path, number, line)
        elif line.startswith("## "):
            if title is None:
                raise KbError(path, number, "a passage before the document's '# ' title")
            sections.append((number, _heading_text(path, number, line), []))
        elif sections:
            sections[-1][2].append(line)
        elif line.strip() and title is None:
            raise KbError(path, number, "text before the document's '# ' title")
        # Text between the title and the first passage is an introduction: not indexed.
    if title is None:
        raise KbError(path, 0, "no '# ' title")
    if not sections:
        raise KbError(path, 0, "no '## ' passages")
    return [_passage(path, title, line, heading, body) for line, heading, body in sections]


def _heading_text(path: Path, line: int, raw: str) -> str:
    text = raw.lstrip("#").strip()
    if not text:
        raise KbError(path, line, "empty heading")
    return text


def _passage(path: Path, title: str, line: int, heading: str, body: list[str]) -> Passage:
    text = "\n".join(body).strip()
    if not text:
        raise KbError(path, line, f"passage {heading!r} has no text")
    match = _SECTION.match(heading)
    number, name = (match.group(1), match.group(2)) if match else (None, heading)
    key = number if number is not None else slugify(name)
    if not key:
        raise KbError(path, line, f"heading {heading!r} gives an empty id")
    return Passage(
        id=f"{path.stem}#{key}",
        title=title,
        heading=name,
        number=number,
        text=text,
        file=path,
        line=line,
    )


def _yaml(path: Path, text: str) -> tuple[yaml.Node | None, object]:
    """The document's node tree (for line numbers) and its data."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(err, "problem", None) or str(err)
        raise KbError(path, line, f"bad YAML: {problem}") from err


def parse_vocabulary(path: Path, text: str) -> Vocabulary:
    """Parse `vocabulary.yaml`: `names` (a list), `heard_as` and `synonyms` (mappings
    of one phrase to another); every key optional."""
    root, data = _yaml(path, text)
    if data is None:
        return Vocabulary()
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise KbError(path, 1, "expected a mapping with names, heard_as and synonyms")
    lines = {key.value: key.start_mark.line + 1 for key, _ in root.value}
    unknown = set(data) - {"names", "heard_as", "synonyms"}
    if unknown:
        first = min(unknown, key=lambda k: lines.get(k, 0))
        raise KbError(
            path, lines.get(first, 1), f"unknown key {first!r} (known: names, heard_as, synonyms)"
        )
    names = data.get("names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise KbError(path, lines.get("names", 1), "names must be a list of words")
    tables: dict[str, dict[str, str]] = {}
    for key in ("heard_as", "synonyms"):
        table = data.get(key) or {}
        if not isinstance(table, dict) or not all(
            isinstance(k, str | int) and isinstance(v, str | int) and str(k).strip()
            for k, v in table.items()
        ):
            raise KbError(path, lines.get(key, 1), f"{key} must map phrases to phrases")
        tables[key] = {str(k).strip(): str(v).strip() for k, v in table.items()}
    return Vocabulary(
        names=tuple(n.strip() for n in names),
        heard_as=tables["heard_as"],
        synonyms=tables["synonyms"],
    )


def parse_faq(path: Path, text: str) -> list[FaqEntry]:
    """Parse `faq.yaml`: a list of `{id, questions, answer, source?}`."""
    root, data = _yaml(path, text)
    if data is None:
        return []
    if not isinstance(root, yaml.SequenceNode) or not isinstance(data, list):
        raise KbError(path, 1, "expected a list of FAQ entries")
    return [
        _faq_entry(path, node.start_mark.line + 1, item)
        for node, item in zip(root.value, data, strict=True)
    ]


def _faq_entry(path: Path, line: int, item: object) -> FaqEntry:
    if not isinstance(item, dict):
        raise KbError(path, line, "an FAQ entry must be a mapping with id, questions, answer")
    missing = [key for key in ("id", "questions", "answer") if key not in item]
    if missing:
        raise KbError(path, line, f"FAQ entry is missing {', '.join(missing)}")
    unknown = set(item) - {"id", "questions", "answer", "source"}
    if unknown:
        raise KbError(path, line, f"unknown FAQ keys: {', '.join(sorted(map(str, unknown)))}")
    questions = item["questions"]
    if (
        not isinstance(questions, list)
        or not questions
        or not all(isinstance(q, str) and q.strip() for q in questions)
    ):
        raise KbError(path, line, "questions must be a non-empty list of strings")
    entry_id, answer, source = item["id"], item["answer"], item.get("source")
    if not isinstance(entry_id, str | int) or not str(entry_id).strip():
        raise KbError(path, line, "id must be a non-empty string")
    if not isinstance(answer, str) or not answer.strip():
        raise KbError(path, line, "answer must be a non-empty string")
    if source is not None and not isinstance(source, str):
        raise KbError(path, line, "source must be a passage id such as 'troubleshooting#4.2'")
    return FaqEntry(
        id=f"faq#{entry_id}",
        questions=tuple(q.strip() for q in questions),
        answer=answer.strip(),
        source=source,
        file=path,
        line=line,
    )


def _check_unique(entries: list[Passage | FaqEntry]) -> None:
    seen: dict[str, Passage | FaqEntry] = {}
    for entry in entries:
        first = seen.setdefault(entry.id, entry)
        if first is not entry:
            raise KbError(
                entry.file,
                entry.line,
                f"duplicate id {entry.id!r} (first at {first.file.name}:{first.line})",
            )


class KnowledgeBaseWatcher:
    """Reloads a KB directory when its files change, keeping the last good KB in service.

    Polls modification times (no inotify), so it works on any filesystem. One watcher per
    directory; `reload_if_changed` is not meant to run from two threads at once.
    """

    def __init__(
        self,
        root: Path,
        on_reload: Callable[[KnowledgeBase], None] | None = None,
        current: KnowledgeBase | None = None,
    ) -> None:
        """Load the KB now, or adopt `current`.

        Args:
            root: the KB directory.
            on_reload: called with each newly loaded KB, in the thread that ran
                `reload_if_changed`.
            current: a KB already loaded from `root` (and in service). The watcher cannot
                know which state of the files it came from, so the first look reloads once.

        Raises:
            KbError: `current` is None and the KB cannot be loaded; there is nothing to keep
                in service.
        """
        self.root = root
        self._on_reload = on_reload
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        if current is None:
            self._signature = self._scan()
            current = load_kb(root)
        self.current = current
        """The KB in service: the last one that loaded without error."""
        self.last_error: KbError | None = None
        """Why the last reload failed; None after a successful one."""

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        paths = [
            *sorted(self.root.glob("*.md")),
            self.root / FAQ_FILE,
            self.root / VOCABULARY_FILE,
        ]
        signature = []
        for path in paths:
            if path.exists():
                stat = path.stat()
                signature.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(signature)

    def reload_if_changed(self) -> bool:
        """Reload if a file was added, removed or modified since the last look.

        Returns:
            True when a new KB is now in service. A KB that fails to load is logged, kept in
            `last_error`, and not retried until the files change again.
        """
        signature = self._scan()
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            kb = load_kb(self.root)
            if self._on_reload is not None:
                self._on_reload(kb)
        except KbError as err:
            self.last_error = err
            log.error("knowledge base not reloaded, keeping the previous one: %s", err)
            return False
        except Exception as err:  # noqa: BLE001 - indexing it failed: keep serving the old one
            self.last_error = KbError(self.root, 0, f"cannot index it: {err!r}")
            log.error("knowledge base not reloaded, keeping the previous one: %r", err)
            return False
        self.current, self.last_error = kb, None
        log.info(
            "knowledge base reloaded: %d passages, %d FAQ entries", len(kb.passages), len(kb.faqs)
        )
        return True

    async def watch(self, interval_s: float = 2.0) -> None:
        """Poll every `interval_s` seconds until cancelled (cancelling is safe).

        Loading runs in a worker thread so a large KB never blocks the event loop.
        """
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.reload_if_changed)
