"""Hybrid retrieval: BM25 and vector candidates, fused by reciprocal rank, resolved to ready chunks."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Literal

from rag_service.bm25 import BM25Index
from rag_service.catalog import KnowledgeBase
from rag_service.errors import InvalidInputError
from rag_service.fusion import reciprocal_rank_fusion
from rag_service.records import Hit
from rag_service.tokenize import tokenize
from rag_service.workspace import Workspace

Mode = Literal["bm25", "vector", "hybrid"]
MODES: tuple[Mode, ...] = ("bm25", "vector", "hybrid")

_bm25_cache: dict[tuple[str, str], tuple[int, BM25Index]] = {}
_bm25_lock = threading.Lock()


def bm25_index(ws: Workspace, kb: KnowledgeBase) -> BM25Index:
    """The KB's BM25 index, rebuilt from the catalog's stored tokens only when its revision moved."""
    key = (str(ws.settings.data_dir.resolve()), kb.id)
    revision = ws.catalog.revision(kb.id)
    with _bm25_lock:
        cached = _bm25_cache.get(key)
        if cached is None or cached[0] != revision:
            cached = (revision, BM25Index().build(ws.catalog.ready_chunk_tokens(kb.id)))
            _bm25_cache[key] = cached
        return cached[1]


class Retriever:
    def __init__(self, ws: Workspace, kb: KnowledgeBase) -> None:
        self.ws = ws
        self.kb = kb
        self.embedder = ws.embedder_for(kb)

    def search(self, query: str, *, k: int | None = None, mode: Mode = "hybrid") -> list[Hit]:
        query = query.strip()
        if not query:
            raise InvalidInputError("the query is empty")
        if mode not in MODES:
            raise InvalidInputError(f"unknown search mode '{mode}' (choose from {', '.join(MODES)})")
        settings = self.ws.settings
        k = k or settings.search_k
        n = max(settings.search_candidates, k)

        ranked: dict[str, list[tuple[str, float]]] = {}
        if mode in ("bm25", "hybrid"):
            ranked["bm25"] = bm25_index(self.ws, self.kb).top(tokenize(query), n)
        if mode in ("vector", "hybrid"):
            vector = self.embedder.embed_query(query)
            ranked["vector"] = self.ws.vectors.query(self.kb.collection, self.embedder.name, vector, n)

        if mode == "hybrid":
            fused = reciprocal_rank_fusion({name: [i for i, _ in lst] for name, lst in ranked.items()},
                                           k=settings.rrf_k)
        else:
            fused = ranked[mode]
        # Vector ids can name chunks of documents that are pending or were deleted mid-way: drop them.
        chunks = self.ws.catalog.ready_chunks(self.kb.id, [i for i, _ in fused[: n * 2]])
        seen = {name: {cid: (rank, s) for rank, (cid, s) in enumerate(lst, start=1)}
                for name, lst in ranked.items()}
        hits: list[Hit] = []
        for chunk_id, score in fused:
            chunk = chunks.get(chunk_id)
            if chunk is None:
                continue
            views = {name: pos[chunk_id] for name, pos in seen.items() if chunk_id in pos}
            hits.append(Hit(chunk=chunk, score=score, ranks={n: r for n, (r, _) in views.items()},
                            scores={n: s for n, (_, s) in views.items()}))
        return self._resolve_parents(hits)[:k]

    def _resolve_parents(self, hits: list[Hit]) -> list[Hit]:
        """Swap child chunks for their parent section (the context the generator needs); several
        children of one parent become one hit at the best child's rank."""
        parent_ids = [h.chunk.metadata["parent_id"] for h in hits if "parent_id" in h.chunk.metadata]
        if not parent_ids:
            return hits
        parents = self.ws.catalog.ready_chunks(self.kb.id, list(dict.fromkeys(parent_ids)))
        out: list[Hit] = []
        taken: set[str] = set()
        for hit in hits:
            parent = parents.get(hit.chunk.metadata.get("parent_id", ""))
            chunk = parent or hit.chunk
            if chunk.id in taken:
                continue
            taken.add(chunk.id)
            out.append(replace(hit, chunk=chunk, matched=hit.chunk.id) if parent else hit)
        return out
