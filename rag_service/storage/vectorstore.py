"""The vector index behind an interface: what ingestion, retrieval and re-ranking need of it, nothing more.

One collection per knowledge base, keyed by chunk id, holding our own unit-length embeddings. Filters arrive as a
``VectorFilter`` (documents and metadata equalities), so each backend translates them into its own syntax (Chroma's
``where`` lives in ``rag_service.storage.chroma``). Adding a backend (pgvector, Qdrant...) is one module with a
``VectorIndex`` subclass and an entry in ``rag_service.storage.vector_backends.VECTOR_BACKENDS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag_service.records import Chunk
from rag_service.storage.filters import Scalar


@dataclass(frozen=True, slots=True)
class VectorFilter:
    """Chunks of ``doc_ids`` (any document when None) whose metadata has every ``(key, value)``."""

    doc_ids: tuple[str, ...] | None = None
    metadata: tuple[tuple[str, Scalar], ...] = ()


class VectorIndex(ABC):
    name: str

    @abstractmethod
    def upsert(self, collection: str, embedder: str, ids: list[str], vectors: np.ndarray,
               metadatas: list[dict[str, Any]]) -> None:
        """Store vectors (with the metadata filters match on); the collection remembers its embedder and
        dimension and refuses vectors of another (EmbedderMismatchError)."""

    @abstractmethod
    def delete(self, collection: str, ids: list[str]) -> None:
        """Remove these chunks' vectors; absent ids and collections are no error."""

    @abstractmethod
    def count(self, collection: str) -> int: ...

    @abstractmethod
    def drop(self, collection: str) -> None:
        """Remove the whole collection (a deleted knowledge base)."""

    @abstractmethod
    def query(self, collection: str, embedder: str, vector: np.ndarray, n: int,
              flt: VectorFilter | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the ``n`` nearest chunks matching ``flt``, best first."""

    @abstractmethod
    def vectors(self, collection: str, ids: list[str]) -> dict[str, np.ndarray]:
        """Stored vectors by chunk id (for re-scoring and export without embedding passages again)."""

    def similarities(self, collection: str, ids: list[str], vector: np.ndarray) -> dict[str, float]:
        """Cosine of ``vector`` to each stored chunk among ``ids`` (our embedders store unit vectors), for
        scoring a known handful of chunks exactly, without an index walk."""
        stored = self.vectors(collection, ids)
        if not stored:
            return {}
        sims = np.stack(list(stored.values())) @ vector
        return dict(zip(stored, (float(x) for x in sims), strict=True))


def vector_metadata(chunk: Chunk) -> dict[str, str | int | float | bool]:
    """What Chroma stores beside a vector, so ``where`` filters work there as in the catalog:
    scalar metadata as is, heading paths joined, everything else left to the catalog."""
    meta: dict[str, str | int | float | bool] = {"doc_id": chunk.doc_id, "source": chunk.source,
                                                 "position": chunk.position}
    for key, value in chunk.metadata.items():
        if isinstance(value, str | int | float | bool):
            meta[key] = value
        elif key == "headings" and value:
            meta[key] = " > ".join(value)
    return meta
