"""What of a KB is embedded (its units), and the disk cache that embeds each text only once.

Units, for every passage: the heading with the text (the passage as a whole, cut by the model
at 256 tokens), the heading alone, and each spoken block (a sentence or a numbered step,
`agent.speech.blocks`) prefixed with the heading, so "It takes two days." still says what
takes two days. For every FAQ entry: each of its questions.

The cache keeps one file per KB directory and model: the SHA-256 of each unit's text and its
vector. A KB reload embeds only the texts it has not seen; a changed model, or a file that is
missing or unreadable, just means embedding again.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from agent.embedder import DIMENSIONS, Embedder, EmbedderError, model_file
from agent.kb import KnowledgeBase
from agent.speech import blocks, plain

log = logging.getLogger(__name__)

UnitKind = Literal["passage", "heading", "block", "faq"]


@dataclass(frozen=True)
class Unit:
    """One embedded text and the KB entry it stands for."""

    entry: str
    """The id of the passage or FAQ entry."""
    kind: UnitKind
    text: str


@functools.cache
def _model_stamp(model: str) -> str:
    """The size of the model's file: it changes when the wheel brings another model. Read
    once per process (it scans the wheel's file list)."""
    try:
        return str(model_file(model).stat().st_size)
    except (EmbedderError, OSError):
        return "0"


def units_of(kb: KnowledgeBase) -> list[Unit]:
    """Every unit of the KB, passages first, each passage's blocks in text order."""
    units: list[Unit] = []
    for p in kb.passages:
        spoken = blocks(p.text)
        body = " ".join(b.text for b in spoken)
        units.append(Unit(p.id, "passage", f"{p.heading}. {body}"))
        units.append(Unit(p.id, "heading", p.heading))
        units.extend(Unit(p.id, "block", f"{p.heading}: {b.text}") for b in spoken)
    for f in kb.faqs:
        units.extend(Unit(f.id, "faq", plain(q)) for q in f.questions)
    return units


MEMORY_LIMIT = 20_000
"""Vectors kept in memory across KB loads of one process (about 30 MB): a reload, or a second
agent on the same KB, embeds nothing again even without a disk cache."""
_memory: dict[tuple[str, str], np.ndarray] = {}


class EmbeddingCache:
    """Vectors of texts already embedded, on disk under `directory` (None: no disk cache).

    Safe to use from one thread per KB directory at a time (a reload runs in one thread); the
    file is replaced atomically, so a reader never sees half of it.
    """

    def __init__(self, directory: Path | None, kb_root: Path | None = None) -> None:
        self._file: Path | None = None
        self._readable: dict[str, bool] = {}
        if directory is not None:
            key = hashlib.sha256(str(kb_root or "").encode()).hexdigest()[:16]
            self._file = directory / f"kb-{key}"

    def vectors(self, embedder: Embedder, texts: list[str]) -> np.ndarray:
        """One unit vector per text, from the cache where it has them, else embedded now."""
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        known = self._load(embedder.name)
        for key in keys:
            kept = _memory.get((embedder.name, key))
            if kept is not None:
                known.setdefault(key, kept)
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
        if keys and (missing or not self._saved(embedder.name)):
            fresh = embedder.embed([t for _, t in missing]) if missing else None
            if fresh is not None:
                known.update({k: fresh[i] for i, (k, _) in enumerate(missing)})
            self._save(embedder.name, {k: known[k] for k in keys})
            if len(_memory) + len(keys) > MEMORY_LIMIT:
                _memory.clear()
            _memory.update({(embedder.name, k): known[k] for k in keys})
            log.info(
                "embedded %d new knowledge-base texts (%d cached)",
                len(missing),
                len(texts) - len(missing),
            )
        if not texts:
            return np.zeros((0, DIMENSIONS), np.float32)
        return np.stack([known[k] for k in keys]).astype(np.float32)

    def _saved(self, model: str) -> bool:
        """Whether the disk holds this model's vectors (always, without a disk cache)."""
        path = self._path(model)
        return path is None or self._readable.get(model, False)

    def _path(self, model: str) -> Path | None:
        """One file per KB directory, model and model file: a model upgraded under the same
        name starts a new file rather than mixing its vectors with the old model's."""
        if self._file is None:
            return None
        return self._file.with_name(f"{self._file.name}-{model}-{_model_stamp(model)}.npz")

    def _load(self, model: str) -> dict[str, np.ndarray]:
        path = self._path(model)
        if path is None or not path.exists():
            return {}
        try:
            with np.load(path) as data:
                found = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
            self._readable[model] = True
            return found
        except Exception as err:  # noqa: BLE001 - any unreadable cache means: embed again
            log.warning("embedding cache %s unreadable, embedding again: %s", path, err)
            return {}

    def _save(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        path = self._path(model)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".partial.npz")
            with os.fdopen(handle, "wb") as out:  # a name of its own: writers never mix
                keys, rows = np.array(list(vectors)), np.stack(list(vectors.values()))
                np.savez(out, keys=keys, vectors=rows)
            os.replace(partial, path)
        except OSError as err:
            log.warning("embedding cache %s not written: %s", path, err)
