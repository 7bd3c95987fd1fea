"""Feedback as a recall signal: a question close to one whose answer was up-voted gets that answer's cited chunks
as one more ranked list in the fusion ("feedback" in ``--explain``), so what helped before is found again.

Closeness is the cosine of the two questions under the KB's embedder, at least ``feedback_boost_similarity``. A
chunk cited by a down-voted answer to a close question is never boosted. The up-voted questions' embeddings are
computed once per process and feedback item. Off by default (``feedback_boost``): it helped on the structure
benchmark, but on too few questions to trust its threshold (docs/evaluation.md "Feedback boost").
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rag_service.models.embeddings import Embedder
    from rag_service.storage.catalog import KnowledgeBase
    from rag_service.workspace import Workspace

_vectors: dict[tuple[str, str], np.ndarray] = {}  # (embedder, feedback id) -> question vector
_lock = threading.Lock()
MAX_CACHED = 50_000


def _question_vectors(embedder: Embedder, items: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Vectors of the feedback questions, ``items`` = (feedback id, question), embedding only the new ones."""
    with _lock:
        missing = [(fid, q) for fid, q in items if (embedder.name, fid) not in _vectors]
    if missing:
        fresh = np.stack([embedder.embed_query(q) for _, q in missing])  # questions compare as queries
        with _lock:
            if len(_vectors) > MAX_CACHED:
                _vectors.clear()
            for (fid, _), vector in zip(missing, fresh, strict=True):
                _vectors[(embedder.name, fid)] = vector
    with _lock:
        return {fid: _vectors[(embedder.name, fid)] for fid, _ in items}


def boosted_chunks(ws: Workspace, kb: KnowledgeBase, embedder: Embedder, query_vector: np.ndarray,
                   threshold: float) -> list[tuple[str, float]]:
    """(chunk id, similarity of the rated question) cited by up-voted answers to questions at least ``threshold``
    close to this one, best first; chunks cited by close down-voted answers are left out."""
    rated = ws.feedback.for_kb(kb.id)
    if not rated:
        return []
    vectors = _question_vectors(embedder, [(f.id, f.question) for f in rated])
    best: dict[str, float] = {}
    vetoed: set[str] = set()
    for item in rated:
        similarity = float(vectors[item.id] @ query_vector)
        if similarity < threshold:
            continue
        cited = [str(c["chunk_id"]) for c in item.citations if c.get("chunk_id")]
        if item.rating == "down":
            vetoed.update(cited)
            continue
        for chunk_id in cited:
            best[chunk_id] = max(best.get(chunk_id, 0.0), similarity)
    return sorted(((c, s) for c, s in best.items() if c not in vetoed), key=lambda cs: (-cs[1], cs[0]))
