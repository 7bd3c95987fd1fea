"""``rag backup DIR`` / ``rag restore DIR``: a whole instance of the embedded default (SQLite catalog and sessions:
knowledge bases, documents, chunks, glossaries, jobs, people, keys, grants, audit, chat sessions, ratings; and every
KB's vectors), copied while the server runs, and checked when it is restored.

Consistency: the copy is made under the write lock, which every ingest, delete and import takes to store a document,
so no KB changes while it is made (an ingest running meanwhile waits at its next document, then goes on). The SQLite
files are copied with SQLite's online backup API, so readers and the session writers of a running server are not
stopped; the vectors are read through the vector index's API (embedded Chroma or a Chroma server alike), so no index
file is copied half-written. The BM25 index is not copied: it is derived from the catalog and rebuilt on first use.

Format (a directory): ``manifest.json`` (format, version, created, per KB its counts and a probe: a query made from
one of its chunks and the chunk ids a hybrid search returned for it), ``catalog.sqlite3``, ``sessions.sqlite3``,
``vectors/<kb id>.npz`` (``ids`` and float32 ``vectors``).

A restore goes into an empty data dir (the server stopped), writes the vectors back with the catalog's chunk
metadata, and then checks that every KB has the recorded documents, chunks and vectors, and that each probe search
returns the same hits in the same order; otherwise it fails naming what differs. PostgreSQL deployments back up their
database with ``pg_dump`` instead (README "Backup and restore").
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rag_service.errors import ConfigError, InvalidInputError, StoreError
from rag_service.retrieval.search import Retriever
from rag_service.settings import Settings
from rag_service.storage.catalog import KnowledgeBase
from rag_service.storage.db.sqlite import FILES
from rag_service.storage.vectorstore import vector_metadata
from rag_service.workspace import Workspace

FORMAT = "rag-service-backup"
VERSION = 1
MANIFEST = "manifest.json"
PROBE_CHARS = 200  # of a chunk's text, as the probe's query
PROBE_K = 5
UPSERT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class KbCopy:
    id: str
    name: str
    documents: int
    chunks: int
    vectors: int
    probe_query: str | None
    probe_hits: list[str]


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: str
    created: str
    kbs: list[KbCopy]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "created": self.created, "kbs": [asdict(k) for k in self.kbs]}


def _embedded(settings: Settings) -> None:
    if settings.database_url is not None:
        raise ConfigError("rag backup and rag restore copy the embedded SQLite catalog; with RAG_DATABASE_URL, back "
                          "up PostgreSQL with pg_dump and the vectors with rag export (README 'Backup and restore')")


def _probe(ws: Workspace, kb: KnowledgeBase) -> tuple[str | None, list[str]]:
    """A query taken from the KB's first indexed chunk, and the chunk ids a hybrid search returns for it."""
    for doc in ws.catalog.documents(kb.id, status="ready"):
        for chunk, tokens in ws.catalog.document_chunks(kb.id, doc.id):
            if tokens is not None and chunk.text.strip():
                query = " ".join(chunk.text.split())[:PROBE_CHARS]
                return query, [h.chunk.id for h in Retriever(ws, kb).run(query, k=PROBE_K).hits]
    return None, []


def _chunks(ws: Workspace, kb: KnowledgeBase) -> list[tuple[Any, list[str] | None]]:
    """Every chunk of the ready documents (parents too, with tokens None) and its BM25 tokens."""
    return [row for doc in ws.catalog.documents(kb.id, status="ready")
            for row in ws.catalog.document_chunks(kb.id, doc.id)]


def backup(ws: Workspace, dest: Path) -> BackupResult:
    """Copy the instance into ``dest`` (a new or empty directory); written to a sibling first, so an interrupted
    backup never looks complete."""
    _embedded(ws.settings)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInputError(f"{dest} exists and is not an empty directory")
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "vectors").mkdir(parents=True)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    copies: list[KbCopy] = []
    try:
        with ws.write_lock():
            for name in ("catalog", "sessions"):
                source = ws.settings.data_dir / FILES[name]
                if not source.is_file():
                    continue
                src, dst = sqlite3.connect(source), sqlite3.connect(tmp / FILES[name])
                try:
                    src.backup(dst)
                finally:
                    src.close()
                    dst.close()
            for kb in ws.catalog.list_kbs():
                rows = _chunks(ws, kb)
                ids = [chunk.id for chunk, tokens in rows if tokens is not None]
                found: dict[str, np.ndarray] = {}
                try:
                    for start in range(0, len(ids), UPSERT_BATCH):
                        found.update(ws.vectors.vectors(kb.collection, ids[start:start + UPSERT_BATCH]))
                except Exception as exc:  # the index's own errors are not RagErrors
                    raise StoreError(f"cannot read the vectors of knowledge base '{kb.name}': {exc}") from exc
                kept = [i for i in ids if i in found]
                matrix = np.stack([found[i] for i in kept]).astype(np.float32) if kept else \
                    np.zeros((0, kb.dim), dtype=np.float32)
                np.savez(tmp / "vectors" / f"{kb.id}.npz", ids=np.array(kept, dtype=str), vectors=matrix)
                query, hits = _probe(ws, kb)
                documents = len(ws.catalog.documents(kb.id, status="ready"))
                copies.append(KbCopy(kb.id, kb.name, documents, len(rows), len(kept), query, hits))
        result = BackupResult(str(dest), created, copies)
        (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT, "version": VERSION, **result.to_json()},
                                               ensure_ascii=False, indent=2), encoding="utf-8")
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _manifest(src: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{src} is not a rag backup: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InvalidInputError(f"{src} is not a {FORMAT} version {VERSION} backup")
    return manifest


def restore(settings: Settings, src: Path) -> BackupResult:
    """Restore ``src`` into the (empty) data dir of ``settings`` and check it; the server must not be running."""
    _embedded(settings)
    manifest = _manifest(src)
    data_dir = settings.data_dir
    present = [FILES[n] for n in ("catalog", "sessions") if (data_dir / FILES[n]).exists()]
    if present:
        raise InvalidInputError(f"{data_dir} already holds {', '.join(present)}: restore into an empty data dir "
                                "(RAG_DATA_DIR)")
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("catalog", "sessions"):
        if (src / FILES[name]).is_file():
            shutil.copyfile(src / FILES[name], data_dir / FILES[name])
    ws = Workspace(settings)
    try:
        for kb_copy in manifest["kbs"]:
            kb = ws.catalog.get_kb(kb_copy["id"])
            saved = np.load(src / "vectors" / f"{kb.id}.npz")
            ids, vectors = [str(i) for i in saved["ids"]], saved["vectors"]
            chunks = {chunk.id: chunk for chunk, tokens in _chunks(ws, kb) if tokens is not None}
            ws.vectors.drop(kb.collection)  # nothing of another instance's may remain under this name
            for start in range(0, len(ids), UPSERT_BATCH):
                part = ids[start:start + UPSERT_BATCH]
                ws.vectors.upsert(kb.collection, kb.embedder, part, vectors[start:start + UPSERT_BATCH],
                                  [vector_metadata(chunks[i]) for i in part])
        _verify(ws, manifest)
    finally:
        ws.close()
    return BackupResult(str(src), manifest["created"], [KbCopy(**k) for k in manifest["kbs"]])


def _verify(ws: Workspace, manifest: dict[str, Any]) -> None:
    problems = []
    for kb_copy in manifest["kbs"]:
        kb = ws.catalog.get_kb(kb_copy["id"])
        documents = len(ws.catalog.documents(kb.id, status="ready"))
        chunks = len(_chunks(ws, kb))
        vectors = ws.vectors.count(kb.collection) if kb_copy["vectors"] else 0
        got = (documents, chunks, vectors)
        wanted = (kb_copy["documents"], kb_copy["chunks"], kb_copy["vectors"])
        if got != wanted:
            problems.append(f"'{kb.name}' has {got} (documents, chunks, vectors), the backup {wanted}")
        elif kb_copy["probe_query"] is not None:
            hits = [h.chunk.id for h in Retriever(ws, kb).run(kb_copy["probe_query"], k=PROBE_K).hits]
            if hits != kb_copy["probe_hits"]:
                problems.append(f"'{kb.name}': the probe search returns {hits}, the backup {kb_copy['probe_hits']}")
    if problems:
        raise StoreError("the restored instance differs from the backup: " + "; ".join(problems))
