"""Re-scoring of fused candidates. Off by default: no reranker has been measured here (the retrieval numbers in
docs/evaluation.md are fusion without one, and no cross-encoder ships in a package); turn one on per KB or request
when it helps your data."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag_service.models.embeddings import Embedder
from rag_service.models.registry import load_sentence_transformers
from rag_service.records import Hit
from rag_service.storage.vectorstore import VectorIndex


class Reranker(ABC):
    name: str

    @abstractmethod
    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """The same hits, re-scored (``scores['rerank']``) and re-ordered, best first."""

    @staticmethod
    def _ordered(hits: list[Hit], scores: np.ndarray) -> list[Hit]:
        rescored = [replace(h, score=float(s), scores={**h.scores, "rerank": float(s)})
                    for h, s in zip(hits, scores, strict=True)]
        return sorted(rescored, key=lambda h: -h.score)


class E5Rescorer(Reranker):
    """Cosine between the query and each candidate's stored vector: cheap (no passage is embedded
    again) and it lets BM25-only candidates be judged semantically."""

    name = "e5"

    def __init__(self, embedder: Embedder, vectors: VectorIndex, collection: str) -> None:
        self._embedder, self._vectors, self._collection = embedder, vectors, collection

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        q = self._embedder.embed_query(query)
        ids = [h.matched or h.chunk.id for h in hits]
        sims = self._vectors.similarities(self._collection, ids, q)
        return self._ordered(hits, np.asarray([sims.get(i, -1.0) for i in ids]))


class CrossEncoderReranker(Reranker):
    """Any sentence-transformers CrossEncoder on disk (none ships with the project)."""

    def __init__(self, path: Path) -> None:
        self._model = load_sentence_transformers("CrossEncoder", path, "rerank")
        self.name = f"cross-encoder:{path}"

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        scores = self._model.predict([(query, h.chunk.text) for h in hits], show_progress_bar=False)
        return self._ordered(hits, np.asarray(scores, dtype=np.float64).reshape(len(hits)))


@functools.lru_cache(maxsize=2)
def cross_encoder(path: str) -> CrossEncoderReranker:
    return CrossEncoderReranker(Path(path))
