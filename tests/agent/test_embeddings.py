"""What of a KB is embedded, and the disk cache that embeds each text once (a real model)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from agent import embeddings
from agent.embedder import Embedder, shared_embedder
from agent.embeddings import EmbeddingCache, Unit, units_of
from agent.kb import load_kb

TEXTS = ["Opening hours", "We open at nine on weekdays.", "Books are lent for three weeks."]


class CountingEmbedder:
    """A real embedder that records every batch it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.batches: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return self.inner.embed(texts)


@pytest.fixture
def counting() -> CountingEmbedder:
    """A counting embedder, with the process's memory of vectors emptied: these tests are
    about what the disk keeps."""
    embeddings._memory.clear()
    return CountingEmbedder(shared_embedder("minilm-l6-int8"))


def vectors(cache: EmbeddingCache, embedder: CountingEmbedder, texts: list[str]) -> np.ndarray:
    return cache.vectors(cast(Embedder, embedder), texts)


def test_the_cache_writes_a_file_and_embeds_only_what_changed(
    tmp_path: Path, counting: CountingEmbedder
) -> None:
    kb_root = tmp_path / "kb"
    first = vectors(EmbeddingCache(tmp_path / "cache", kb_root), counting, TEXTS)
    assert [sorted(batch) for batch in counting.batches] == [sorted(TEXTS)]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    changed = [*TEXTS[:2], "Books are lent for four weeks."]
    second = vectors(EmbeddingCache(tmp_path / "cache", kb_root), counting, changed)
    assert counting.batches[1:] == [["Books are lent for four weeks."]]
    assert np.array_equal(first[:2], second[:2])
    assert np.allclose(second, counting.inner.embed(changed), atol=1e-5)

    vectors(EmbeddingCache(tmp_path / "cache", kb_root), counting, changed)
    assert len(counting.batches) == 2  # everything known: nothing embedded


def test_each_kb_directory_has_its_own_file(tmp_path: Path, counting: CountingEmbedder) -> None:
    vectors(EmbeddingCache(tmp_path, tmp_path / "one"), counting, TEXTS)
    vectors(EmbeddingCache(tmp_path, tmp_path / "two"), counting, TEXTS)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert len(counting.batches) == 1  # the second KB's texts came from the process's memory


def test_without_a_directory_nothing_is_kept_on_disk(
    tmp_path: Path, counting: CountingEmbedder
) -> None:
    cache = EmbeddingCache(None)
    vectors(cache, counting, TEXTS)
    embeddings._memory.clear()  # a new process
    vectors(cache, counting, TEXTS)
    assert len(counting.batches) == 2 and not list(tmp_path.iterdir())
    assert vectors(cache, counting, []).shape == (0, 384)


def test_an_unreadable_cache_is_ignored_and_rewritten(
    tmp_path: Path, counting: CountingEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    vectors(EmbeddingCache(tmp_path, tmp_path / "kb"), counting, TEXTS)
    (file,) = tmp_path.glob("*.npz")
    file.write_bytes(b"not a numpy archive")
    embeddings._memory.clear()  # a new process
    with caplog.at_level(logging.WARNING, logger="agent.embeddings"):
        again = vectors(EmbeddingCache(tmp_path, tmp_path / "kb"), counting, TEXTS)
    assert "unreadable, embedding again" in caplog.text
    assert len(counting.batches) == 2 and len(counting.batches[1]) == len(TEXTS)
    assert np.allclose(again, counting.inner.embed(TEXTS), atol=1e-5)
    vectors(EmbeddingCache(tmp_path, tmp_path / "kb"), counting, TEXTS)
    assert len(counting.batches) == 2  # the rewritten file is read


def test_units_are_the_passage_its_heading_its_blocks_and_faq_questions(tmp_path: Path) -> None:
    (tmp_path / "loans.md").write_text(
        "# Library Guide\n## Renewals\nYou can renew a loan twice. It takes a minute online.\n"
    )
    (tmp_path / "faq.yaml").write_text(
        "- id: renew\n"
        "  questions:\n  - Can I renew a book?\n  - How do I extend a loan?\n"
        "  answer: Twice, online.\n"
    )
    passage = "loans#renewals"
    assert units_of(load_kb(tmp_path)) == [
        Unit(passage, "passage", "Renewals. You can renew a loan twice. It takes a minute online."),
        Unit(passage, "heading", "Renewals"),
        Unit(passage, "block", "Renewals: You can renew a loan twice."),
        Unit(passage, "block", "Renewals: It takes a minute online."),
        Unit("faq#renew", "faq", "Can I renew a book?"),
        Unit("faq#renew", "faq", "How do I extend a loan?"),
    ]


def test_the_process_remembers_vectors_across_caches_without_a_disk(counting) -> None:
    first = vectors(EmbeddingCache(None), counting, TEXTS)
    again = vectors(EmbeddingCache(None), counting, TEXTS)
    assert len(counting.batches) == 1
    np.testing.assert_array_equal(first, again)
