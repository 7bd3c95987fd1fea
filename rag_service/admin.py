"""Administrative operations that span every store of a knowledge base."""

from __future__ import annotations

import shutil

from rag_service.catalog import KnowledgeBase
from rag_service.lexical import index_dir
from rag_service.workspace import Workspace


def delete_kb(ws: Workspace, kb: KnowledgeBase) -> None:
    """Remove a knowledge base everywhere. The catalog (the source of truth) goes first, so searches stop
    seeing the KB at once; a crash afterwards only leaves an orphaned collection or index directory, never a
    half-deleted KB. Holds the write lock, so it waits for a running ingest instead of racing it."""
    with ws.write_lock():
        ws.catalog.delete_kb(kb.id)
        ws.vectors.drop(kb.collection)
        shutil.rmtree(index_dir(ws, kb), ignore_errors=True)
