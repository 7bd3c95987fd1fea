"""Administrative operations that span every store of a knowledge base."""

from __future__ import annotations

import shutil
from typing import Any

from rag_service.errors import DocumentNotFoundError, KnowledgeBaseNotFoundError
from rag_service.index.lexical import index_dir
from rag_service.retrieval.search import fusion_choice
from rag_service.storage.catalog import KnowledgeBase
from rag_service.workspace import Workspace


def describe_kb(ws: Workspace, kb: KnowledgeBase, *, counts: bool = False) -> dict[str, Any]:
    """A KB as ``rag kbs --json`` and ``GET /v1/kbs`` show it: its fixed settings, the language of most of its
    chunks and the fusion a search uses by default; with ``counts``, its ready documents and chunks."""
    choice = fusion_choice(ws, kb)
    out: dict[str, Any] = {
        "id": kb.id, "name": kb.name, "embedder": kb.embedder, "dim": kb.dim, "splitter": kb.splitter,
        "chunk_size": kb.chunk_size, "chunk_overlap": kb.chunk_overlap, "chunk_unit": kb.chunk_unit,
        "created": kb.created, "language": choice.language,
        "fusion": {k: v for k, v in choice.to_json().items() if k != "kb_language"},
    }
    if counts:
        docs = ws.catalog.documents(kb.id, status="ready")
        out |= {"documents": len(docs), "chunks": sum(d.chunks for d in docs)}
    return out


def delete_kb(ws: Workspace, kb: KnowledgeBase, *, lock_timeout: float | None = None) -> None:
    """Remove a knowledge base everywhere. The catalog (the source of truth) goes first, so searches stop
    seeing the KB at once; a crash afterwards only leaves an orphaned collection or index directory, never a
    half-deleted KB. Holds the write lock, so it waits for a running ingest instead of racing it; whether the
    KB still exists is decided under the lock, so concurrent deletes delete once and the rest get 'not found'.
    The KB's upload jobs are cancelled first and lose their bytes (a worker mid-job stops at its next embedding
    batch): a worker that finds the KB gone then finds its job cancelled too, instead of failing it in between."""
    with ws.write_lock(lock_timeout):
        if ws.catalog.find_kb(kb.id) is None:
            raise KnowledgeBaseNotFoundError(f"knowledge base '{kb.name}' does not exist")
        ws.jobs.cancel_kb(kb.id, f"knowledge base '{kb.name}' was deleted")
        ws.catalog.delete_kb(kb.id)
        ws.vectors.drop(kb.collection)
        shutil.rmtree(index_dir(ws, kb), ignore_errors=True)


def delete_document(ws: Workspace, kb: KnowledgeBase, doc_id: str, *, lock_timeout: float | None = None) -> None:
    """Remove one document and every trace of it (chunks, vectors, BM25 postings through the change log), for
    the CLI and the REST API alike. Existence is checked under the write lock: of concurrent deletes of one
    document exactly one removes it (one change-log entry), the others get DocumentNotFoundError."""
    with ws.write_lock(lock_timeout):
        if ws.catalog.get_document(kb.id, doc_id) is None:
            raise DocumentNotFoundError(f"knowledge base '{kb.name}' has no document '{doc_id}'")
        ws.remove_document(kb, doc_id)
