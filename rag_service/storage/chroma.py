"""Chroma as the vector index: one collection per knowledge base, always fed our own embeddings.

Embedded ``PersistentClient`` under the data dir by default; ``HttpClient`` when ``chroma_url`` is set (a
``chroma run`` server shared by replicas). Chroma's default embedding function would try to download a model, so
collections never get one. Chroma's ``where`` syntax lives here only: callers pass a ``VectorFilter``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from rag_service.errors import EmbedderMismatchError, StoreError
from rag_service.storage.vectorstore import VectorFilter, VectorIndex

_BATCH = 2000
log = logging.getLogger(__name__)


def _client(data_dir: Path, chroma_url: str | None) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if chroma_url:
        url = urlparse(chroma_url if "://" in chroma_url else f"http://{chroma_url}")
        if not url.hostname:
            raise StoreError(f"chroma_url {chroma_url!r} has no host")
        try:
            return chromadb.HttpClient(host=url.hostname, port=url.port or 8000, ssl=url.scheme == "https",
                                       settings=chroma_settings)
        except Exception as exc:
            raise StoreError(f"cannot reach the Chroma server at {chroma_url}: {exc}") from exc
    path = data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def where(flt: VectorFilter | None) -> dict[str, Any] | None:
    """Chroma's ``where`` for a filter: metadata equalities and the allowed documents, all required."""
    if flt is None:
        return None
    clauses: list[dict[str, Any]] = [{key: value} for key, value in flt.metadata]
    if flt.doc_ids is not None:
        clauses.append({"doc_id": {"$in": list(flt.doc_ids)}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class ChromaIndex(VectorIndex):
    name = "chroma"

    def __init__(self, data_dir: Path, chroma_url: str | None = None) -> None:
        self._client = _client(data_dir, chroma_url)
        self._open: dict[tuple[str, str, int], Any] = {}  # checked collection handles; a lookup costs ms

    def _collection(self, name: str, dim: int, embedder: str) -> Any:
        key = (name, embedder, dim)
        col = self._open.get(key)
        if col is not None:
            return col
        col = self._client.get_or_create_collection(
            name, embedding_function=None,
            metadata={"hnsw:space": "cosine", "embedder": embedder, "dim": dim},
        )
        meta = col.metadata or {}
        if meta.get("embedder") != embedder or meta.get("dim") != dim:
            raise EmbedderMismatchError(
                f"Chroma collection {name} holds vectors of embedder '{meta.get('embedder')}' "
                f"(dim {meta.get('dim')}), not '{embedder}' (dim {dim})"
            )
        self._open[key] = col
        return col

    def upsert(self, collection: str, embedder: str, ids: list[str], vectors: np.ndarray,
               metadatas: list[dict[str, Any]]) -> None:
        col = self._collection(collection, vectors.shape[1], embedder)
        for start in range(0, len(ids), _BATCH):
            end = start + _BATCH
            col.upsert(ids=ids[start:end], embeddings=vectors[start:end], metadatas=metadatas[start:end])

    def delete(self, collection: str, ids: list[str]) -> None:
        if not ids:
            return
        try:
            col = self._client.get_collection(collection, embedding_function=None)
        except Exception:  # no collection means nothing to delete
            return
        for start in range(0, len(ids), _BATCH):
            col.delete(ids=ids[start:start + _BATCH])

    def count(self, collection: str) -> int:
        try:
            return int(self._client.get_collection(collection, embedding_function=None).count())
        except Exception:  # no collection holds no vectors
            return 0

    def drop(self, collection: str) -> None:
        self._open = {k: v for k, v in self._open.items() if k[0] != collection}
        with contextlib.suppress(Exception):  # already gone
            self._client.delete_collection(collection)

    def query(self, collection: str, embedder: str, vector: np.ndarray, n: int,
              flt: VectorFilter | None = None) -> list[tuple[str, float]]:
        col = self._collection(collection, int(vector.shape[0]), embedder)
        # Chroma returns fewer results when the collection is smaller: no count() round trip (it costs
        # more than the query itself at 100k vectors).
        res = col.query(query_embeddings=[vector], n_results=n, where=where(flt), include=["distances"])
        return [(cid, 1.0 - float(d)) for cid, d in zip(res["ids"][0], res["distances"][0], strict=True)]

    def vectors(self, collection: str, ids: list[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        from chromadb.errors import InternalError

        col = self._client.get_collection(collection, embedding_function=None)
        try:
            found = [col.get(ids=ids, include=["embeddings"])]
        except InternalError as exc:
            # After a kill -9 mid-ingest embedded Chroma can fail a get naming an id whose write did not complete
            # ("Error finding id"), while its queries still work (tests/test_crash_safety.py): fetch one by one
            # and leave out what cannot be read, as for an id it does not hold.
            log.warning("Chroma could not read %d vectors at once (%s): reading them one by one", len(ids), exc)
            found = []
            for cid in ids:
                with contextlib.suppress(InternalError):
                    found.append(col.get(ids=[cid], include=["embeddings"]))
        return {cid: np.asarray(v, dtype=np.float32)
                for res in found for cid, v in zip(res["ids"], res["embeddings"], strict=True)}
