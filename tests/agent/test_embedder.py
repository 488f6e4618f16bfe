"""The sentence embedder: both bundled models, real (each loads in well under a second)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.embedder import DIMENSIONS, MODELS, Embedder, EmbedderError, shared_embedder

QUESTION = "Can I keep a borrowed book for longer?"
PARAPHRASE = "Extending your loan period"
UNRELATED = "How to bake sourdough bread"


@pytest.fixture(scope="module", params=sorted(MODELS))
def embedder(request: pytest.FixtureRequest) -> Embedder:
    return shared_embedder(request.param)


def test_both_models_are_known() -> None:
    assert set(MODELS) == {"minilm-l6-int8", "paraphrase-minilm-l3"}


def test_texts_become_unit_vectors_one_row_each(embedder: Embedder) -> None:
    vectors = embedder.embed([QUESTION, PARAPHRASE, UNRELATED])
    assert vectors.shape == (3, DIMENSIONS) == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIMENSIONS)


def test_a_paraphrase_ranks_above_an_unrelated_sentence(embedder: Embedder) -> None:
    question, paraphrase, unrelated = embedder.embed([QUESTION, PARAPHRASE, UNRELATED])
    assert question @ paraphrase > question @ unrelated + 0.15


def test_a_text_gets_the_same_vector_alone_or_padded_in_a_batch(embedder: Embedder) -> None:
    alone = embedder.embed([PARAPHRASE])[0]
    batch = embedder.embed([PARAPHRASE, "A much longer sentence " * 10, QUESTION])
    assert np.allclose(alone, batch[0], atol=1e-4)


def test_an_unknown_model_is_an_embedder_error() -> None:
    with pytest.raises(EmbedderError, match="unknown embedding model 'bert-huge'"):
        Embedder("bert-huge")


def test_the_shared_embedder_is_loaded_once_per_model() -> None:
    assert shared_embedder("minilm-l6-int8") is shared_embedder("minilm-l6-int8")
    assert shared_embedder("minilm-l6-int8") is not shared_embedder("paraphrase-minilm-l3")
