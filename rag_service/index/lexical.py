"""Keeps each KB's BM25 index in step with the catalog, the source of truth.

The index is saved under ``<data_dir>/bm25/<kb id>/`` tagged with the catalog revision it reflects.
On use it catches up by replaying the catalog's change log (documents added or removed since),
so neither a query nor an ingest rebuilds it; replaying is idempotent, so a race with a writer
only means a change is applied twice. A full build happens only for a new index or a new tokenizer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag_service.index.bm25 import BM25Index
from rag_service.storage.catalog import KnowledgeBase
from rag_service.workspace import Workspace

_cache: dict[tuple[str, str], BM25Index] = {}
_lock = threading.Lock()


def index_dir(ws: Workspace, kb: KnowledgeBase) -> Path:
    return ws.settings.data_dir / "bm25" / kb.id


def ensure_tokens(ws: Workspace, kb: KnowledgeBase) -> None:
    """Re-tokenise a KB's stored chunks when the tokenizer changed (new rules or user dictionary).
    Callers hold ``ws.write_lock()``."""
    kb = ws.catalog.get_kb(kb.id)  # the glossary may have changed since ``kb`` was read
    tokenizer = ws.tokenizer_for(kb)
    if kb.options.get("tokenizer") == tokenizer.version:
        return
    ws.catalog.set_tokens(kb.id, [(c.id, tokenizer(c.index_text)) for c in ws.catalog.indexed_chunks(kb.id)])
    ws.catalog.set_kb_option(kb.id, "tokenizer", tokenizer.version)


@contextmanager
def bm25_reader(ws: Workspace, kb: KnowledgeBase) -> Iterator[BM25Index]:
    """The KB's BM25 index, current with the catalog, for use inside the block only. The index is shared and
    updated in place (replay, compaction); scoring it while another thread did so returned a chunk for a term it
    does not contain, or an IndexError. Queries take milliseconds, so they and the updates take turns."""
    with _lock:
        yield _current(ws, kb)


def _current(ws: Workspace, kb: KnowledgeBase) -> BM25Index:
    key = (str(ws.settings.data_dir.resolve()), kb.id)
    directory = index_dir(ws, kb)
    fresh = ws.catalog.get_kb(kb.id)
    version = ws.tokenizer_for(fresh).version
    index = _cache.get(key) or BM25Index.load(directory) or BM25Index()
    if fresh.options.get("tokenizer") != version:
        with ws.write_lock():
            ensure_tokens(ws, kb)
    revision = ws.catalog.revision(kb.id)
    if index.tokenizer != version or index.revision < 0:
        index.build(ws.catalog.ready_chunk_tokens(kb.id))
    elif index.revision != revision:
        _replay(ws, kb, index)
    if (index.revision, index.tokenizer) != (revision, version):
        index.revision, index.tokenizer = revision, version
        if index.needs_compaction():
            index.compact()
        index.save(directory)
    _cache[key] = index
    return index


def _replay(ws: Workspace, kb: KnowledgeBase, index: BM25Index) -> None:
    final: dict[str, str] = {}
    for _, doc_id, op in ws.catalog.changes_since(kb.id, index.revision):
        final[doc_id] = op
    for doc_id, op in final.items():
        index.remove_document(doc_id)
        if op == "add":
            index.add(ws.catalog.ready_chunk_tokens(kb.id, doc_id))

