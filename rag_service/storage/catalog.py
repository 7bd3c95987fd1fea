"""The catalog: the source of truth for knowledge bases, documents and chunks, in any ``storage.db`` backend.

Chroma and the BM25 index are derived from it. A document becomes searchable only when its status
turns ``ready``, after its vectors are stored, so a crash mid-ingest never exposes half a document.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rag_service.errors import (
    InvalidInputError,
    KnowledgeBaseExistsError,
    KnowledgeBaseNotFoundError,
    UniqueViolationError,
)
from rag_service.records import Chunk
from rag_service.storage.db import AddColumn, Database, Executor, Migration
from rag_service.text.language import Language, detect_language, majority_language

# Characters of a document's chunks read to detect its language (plenty to tell scripts apart).
LANGUAGE_SAMPLE_CHARS = 20_000


def _sample(texts: Iterable[str]) -> str:
    """The first ``LANGUAGE_SAMPLE_CHARS`` characters of ``texts``, joined."""
    parts: list[str] = []
    size = 0
    for text in texts:
        parts.append(text)
        size += len(text)
        if size >= LANGUAGE_SAMPLE_CHARS:
            break
    return "\n".join(parts)[:LANGUAGE_SAMPLE_CHARS]


def _backfill_languages(tx: Executor) -> None:
    """Detect the language of documents stored before it was recorded, from their chunks as stored."""
    for (kb_id, doc_id) in tx.execute("SELECT kb_id, id FROM documents WHERE language IS NULL").rows:
        texts = (r[0] for r in tx.execute("SELECT text FROM chunks WHERE kb_id = ? AND doc_id = ? ORDER BY position",
                                          (kb_id, doc_id)))
        tx.execute("UPDATE documents SET language = ? WHERE kb_id = ? AND id = ?",
                   (detect_language(_sample(texts)), kb_id, doc_id))


# Versioned: a catalog of any age is brought up to date on open. Version 1 is the first schema as shipped;
# later columns arrive as steps that skip what older builds had already added (SQLite files predate versioning).
MIGRATIONS = (
    Migration(1, "knowledge bases, documents, chunks, change log", ("""
CREATE TABLE IF NOT EXISTS kbs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    embedder TEXT NOT NULL,
    dim INTEGER NOT NULL,
    splitter TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    chunk_overlap INTEGER NOT NULL,
    created TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS documents (
    kb_id TEXT NOT NULL REFERENCES kbs(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'ready')),
    chunks INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    PRIMARY KEY (kb_id, id)
);
CREATE INDEX IF NOT EXISTS documents_source ON documents (kb_id, source);
CREATE TABLE IF NOT EXISTS chunks (
    kb_id TEXT NOT NULL,
    id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    source TEXT NOT NULL,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    tokens TEXT NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (kb_id, id),
    FOREIGN KEY (kb_id, doc_id) REFERENCES documents(kb_id, id) ON DELETE CASCADE{rowid_column}
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (kb_id, doc_id);
CREATE TABLE IF NOT EXISTS changes (
    kb_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    doc_id TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    PRIMARY KEY (kb_id, revision)
)""",)),
    Migration(2, "chunk units, KB options, parent chunks kept unindexed, document sizes", (
        AddColumn("kbs", "chunk_unit", "TEXT NOT NULL DEFAULT 'chars'"),
        AddColumn("kbs", "options", "TEXT NOT NULL DEFAULT '{}'"),
        AddColumn("chunks", "indexed", "{bool} NOT NULL DEFAULT {true}"),
        AddColumn("documents", "chars", "INTEGER"),
    )),
    Migration(3, "document language (search defaults follow the KB's language)", (
        AddColumn("documents", "language", "TEXT"),
        _backfill_languages,
    )),
    Migration(4, "document format, pages and pages read by OCR (the console's document list shows them)", (
        AddColumn("documents", "format", "TEXT"),
        AddColumn("documents", "pages", "INTEGER"),
        AddColumn("documents", "ocr_pages", "INTEGER"),
    )),
)
# the fields of DocumentRecord
_DOC_COLUMNS = "id, source, sha256, status, chunks, created, chars, language, format, pages, ocr_pages"
CHUNK_UNITS = ("chars", "tokens")

MAX_KB_NAME = 128


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    id: str
    name: str
    embedder: str
    dim: int
    splitter: str
    chunk_size: int
    chunk_overlap: int
    created: str
    revision: int = 0
    chunk_unit: str = "chars"
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Any) -> KnowledgeBase:
        return cls(**{**{k: row[k] for k in _KB_FIELDS}, "options": json.loads(row["options"])})

    @property
    def collection(self) -> str:
        """The Chroma collection name (Chroma wants 3-512 characters of [a-zA-Z0-9._-])."""
        return f"kb_{self.id}"


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    id: str
    source: str
    sha256: str
    status: str
    chunks: int
    created: str
    chars: int | None = None  # length of the extracted text (None: ingested before this was recorded)
    language: str | None = None  # rag_service.text.language.detect_language of its chunks
    format: str | None = None  # rag_service.ingestion.formats.FORMATS name (None: ingested before it was recorded)
    pages: int | None = None  # pages, slides or sheets, for formats that have them
    ocr_pages: int | None = None  # how many of them were read by OCR

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "sha256": self.sha256, "chunks": self.chunks,
                "status": self.status, "created": self.created, "chars": self.chars, "language": self.language,
                "format": self.format, "pages": self.pages, "ocr_pages": self.ocr_pages}


_KB_FIELDS = ("id", "name", "embedder", "dim", "splitter", "chunk_size", "chunk_overlap", "created", "revision",
              "chunk_unit")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Catalog:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("catalog", MIGRATIONS)
        self._languages: dict[str, tuple[int, dict[str | None, int]]] = {}  # kb id -> (revision, chunks by language)

    def close(self) -> None:
        self._db.close()

    def transaction(self) -> AbstractContextManager[Executor]:
        return self._db.transaction()

    # -- knowledge bases -------------------------------------------------------------------------
    def create_kb(self, name: str, *, embedder: str, dim: int, splitter: str, chunk_size: int,
                  chunk_overlap: int, chunk_unit: str = "chars",
                  options: dict[str, Any] | None = None) -> KnowledgeBase:
        name = name.strip()
        if not name or len(name) > MAX_KB_NAME or any(c in name for c in "/\\") or not name.isprintable():
            raise InvalidInputError(
                f"invalid knowledge base name {name!r}: 1-{MAX_KB_NAME} printable characters, no slashes"
            )
        if chunk_unit not in CHUNK_UNITS:
            raise InvalidInputError(f"chunk unit must be one of {', '.join(CHUNK_UNITS)}, not {chunk_unit!r}")
        kb = KnowledgeBase(uuid.uuid4().hex[:12], name, embedder, dim, splitter, chunk_size, chunk_overlap,
                           _now(), 0, chunk_unit, options or {})
        try:
            with self.transaction() as db:
                db.execute("INSERT INTO kbs (id, name, embedder, dim, splitter, chunk_size, chunk_overlap, created, "
                           "chunk_unit, options) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (kb.id, kb.name, kb.embedder, kb.dim, kb.splitter, kb.chunk_size, kb.chunk_overlap,
                            kb.created, kb.chunk_unit, json.dumps(kb.options)))
        except UniqueViolationError:  # created by a concurrent writer a moment ago
            raise KnowledgeBaseExistsError(f"knowledge base '{name}' already exists") from None
        return kb

    def find_kb(self, name_or_id: str) -> KnowledgeBase | None:
        row = self._db.execute("SELECT * FROM kbs WHERE name = ? OR id = ? ORDER BY name = ? DESC LIMIT 1",
                               (name_or_id, name_or_id, name_or_id)).fetchone()
        return KnowledgeBase.from_row(row) if row else None

    def get_kb(self, name_or_id: str) -> KnowledgeBase:
        kb = self.find_kb(name_or_id)
        if kb is None:
            raise KnowledgeBaseNotFoundError(f"knowledge base '{name_or_id}' does not exist")
        return kb

    def list_kbs(self) -> list[KnowledgeBase]:
        return [KnowledgeBase.from_row(r) for r in self._db.execute("SELECT * FROM kbs ORDER BY name")]

    def delete_kb(self, kb_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM chunks WHERE kb_id = ?", (kb_id,))
            db.execute("DELETE FROM documents WHERE kb_id = ?", (kb_id,))
            db.execute("DELETE FROM kbs WHERE id = ?", (kb_id,))

    # -- documents -------------------------------------------------------------------------------
    def documents(self, kb_id: str, *, source: str | None = None,
                  status: str | None = None) -> list[DocumentRecord]:
        sql = f"SELECT {_DOC_COLUMNS} FROM documents WHERE kb_id = ?"
        args: list[Any] = [kb_id]
        if source is not None:
            sql += " AND source = ?"
            args.append(source)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        return [DocumentRecord(**dict(r)) for r in self._db.execute(sql + " ORDER BY created, source", args)]

    def kb_language(self, kb: KnowledgeBase) -> Language | None:
        """The language of most of the KB's searchable chunks (None: an empty KB)."""
        return majority_language(self.kb_languages(kb))

    def kb_languages(self, kb: KnowledgeBase) -> dict[str | None, int]:
        """Searchable chunks per document language. Documents become searchable or go away only with a new
        revision, so the answer is kept per revision (one query per change, not per search)."""
        cached = self._languages.get(kb.id)
        if cached is not None and cached[0] == kb.revision:
            return cached[1]
        rows = self._db.execute("SELECT language, SUM(chunks) FROM documents WHERE kb_id = ? AND status = 'ready' "
                                "GROUP BY language", (kb.id,)).rows
        counts = {r[0]: int(r[1] or 0) for r in rows}
        self._languages[kb.id] = (kb.revision, counts)
        return counts

    def get_document(self, kb_id: str, doc_id: str) -> DocumentRecord | None:
        row = self._db.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE kb_id = ? AND id = ?",
            (kb_id, doc_id)).fetchone()
        return DocumentRecord(**dict(row)) if row else None

    def add_pending_document(self, kb_id: str, doc_id: str, source: str, sha256: str,
                             chunks: list[Chunk], tokens: list[list[str] | None], chars: int | None = None,
                             created: str | None = None, *, fmt: str | None = None, pages: int | None = None,
                             ocr_pages: int | None = None) -> None:
        """Write a document and its chunks in one transaction, not yet searchable. A chunk whose
        tokens are None is stored for context only (a parent section), never indexed. ``created``: keep the time
        of an imported document (default: now)."""
        language = detect_language(_sample(c.text for c in chunks))
        with self.transaction() as db:
            db.execute("INSERT INTO documents (kb_id, id, source, sha256, status, chunks, created, chars, language, "
                       "format, pages, ocr_pages) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
                       (kb_id, doc_id, source, sha256, sum(t is not None for t in tokens), created or _now(), chars,
                        language, fmt, pages, ocr_pages))
            db.executemany(
                "INSERT INTO chunks (kb_id, id, doc_id, source, position, text, start, \"end\", tokens, metadata, "
                "indexed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(kb_id, c.id, c.doc_id, c.source, c.position, c.text, c.start, c.end, " ".join(t or []),
                  json.dumps(c.metadata, ensure_ascii=False), t is not None)
                 for c, t in zip(chunks, tokens, strict=True)])

    def set_status(self, kb_id: str, doc_id: str, status: str) -> None:
        """Make a document searchable (``ready``) or hide it before its parts are removed (``pending``)."""
        with self.transaction() as db:
            was = self._status(db, kb_id, doc_id)
            db.execute("UPDATE documents SET status = ? WHERE kb_id = ? AND id = ?", (status, kb_id, doc_id))
            if was is not None and (was == "ready") != (status == "ready"):  # the searchable set changed
                self._log(db, kb_id, doc_id, "add" if status == "ready" else "del")

    def delete_document(self, kb_id: str, doc_id: str) -> None:
        """Drop a document's rows; logged only if it was still searchable (hiding it logged the change)."""
        with self.transaction() as db:
            was = self._status(db, kb_id, doc_id)
            db.execute("DELETE FROM chunks WHERE kb_id = ? AND doc_id = ?", (kb_id, doc_id))
            db.execute("DELETE FROM documents WHERE kb_id = ? AND id = ?", (kb_id, doc_id))
            if was == "ready":
                self._log(db, kb_id, doc_id, "del")

    @staticmethod
    def _status(db: Executor, kb_id: str, doc_id: str) -> str | None:
        row = db.execute("SELECT status FROM documents WHERE kb_id = ? AND id = ?", (kb_id, doc_id)).fetchone()
        return str(row[0]) if row else None

    @staticmethod
    def _log(db: Executor, kb_id: str, doc_id: str, op: str) -> None:
        """Bump the KB's revision and record why, so derived indexes catch up by replaying changes."""
        db.execute("UPDATE kbs SET revision = revision + 1 WHERE id = ?", (kb_id,))
        db.execute("INSERT INTO changes SELECT id, revision, ?, ? FROM kbs WHERE id = ?", (doc_id, op, kb_id))

    def revision(self, kb_id: str) -> int:
        """Grows whenever the searchable set of a KB changes; derived indexes compare it to catch up."""
        row = self._db.execute("SELECT revision FROM kbs WHERE id = ?", (kb_id,)).fetchone()
        return int(row[0]) if row else -1

    def changes_since(self, kb_id: str, revision: int) -> list[tuple[int, str, str]]:
        """(revision, doc id, 'add'|'del') after ``revision``, oldest first."""
        return [tuple(r) for r in self._db.execute(
            "SELECT revision, doc_id, op FROM changes WHERE kb_id = ? AND revision > ? ORDER BY revision",
            (kb_id, revision))]

    def set_kb_option(self, kb_id: str, key: str, value: Any) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT options FROM kbs WHERE id = ?", (kb_id,)).fetchone()
            options = {**json.loads(row[0]), key: value}
            db.execute("UPDATE kbs SET options = ? WHERE id = ?", (json.dumps(options), kb_id))

    def chunk_ids(self, kb_id: str, doc_id: str) -> list[str]:
        """Ids of the document's indexed chunks (those with vectors in Chroma)."""
        return [r[0] for r in self._db.execute(
            "SELECT id FROM chunks WHERE kb_id = ? AND doc_id = ? AND indexed ORDER BY position", (kb_id, doc_id))]

    def ready_chunk_tokens(self, kb_id: str,
                           doc_id: str | None = None) -> Iterable[tuple[str, str, list[str]]]:
        """(document id, chunk id, BM25 tokens) of every searchable chunk (of one document if given)."""
        sql = ("SELECT c.doc_id, c.id, c.tokens FROM chunks c "
               "JOIN documents d ON d.kb_id = c.kb_id AND d.id = c.doc_id "
               "WHERE c.kb_id = ? AND d.status = 'ready' AND c.indexed")
        args: list[Any] = [kb_id]
        if doc_id is not None:
            sql += " AND c.doc_id = ?"
            args.append(doc_id)
        for row in self._db.stream(sql + " ORDER BY c.{rowid}", args):
            yield row[0], row[1], row[2].split(" ") if row[2] else []

    def filtered_doc_ids(self, kb_id: str, doc_ids: Iterable[str] | None, source_glob: str | None) -> list[str]:
        """Ready documents among ``doc_ids`` (all when None, none when empty) whose source matches the glob."""
        sql, args = "SELECT id FROM documents WHERE kb_id = ? AND status = 'ready'", [kb_id]
        if doc_ids is not None:
            ids = list(doc_ids)
            if not ids:
                return []
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            args += ids
        if source_glob is not None:
            sql += f" AND {self._db.dialect.glob('source')}"
            args.append(self._db.dialect.glob_param(source_glob))
        return [r[0] for r in self._db.execute(sql, args)]

    def filtered_chunk_ids(self, kb_id: str, doc_ids: list[str] | None,
                           metadata: Iterable[tuple[str, Any]]) -> list[str]:
        """Indexed chunks of ``doc_ids`` (all documents when None, none when empty) whose metadata has the given
        values."""
        sql, args = "SELECT id FROM chunks WHERE kb_id = ? AND indexed", [kb_id]
        if doc_ids is not None:
            if not doc_ids:  # `IN ()` is an error in PostgreSQL (SQLite reads it as false)
                return []
            sql += f" AND doc_id IN ({','.join('?' * len(doc_ids))})"
            args += doc_ids
        for key, value in metadata:
            clause, params = self._db.dialect.json_equals("metadata", key, value)
            sql += f" AND {clause}"
            args += params
        return [r[0] for r in self._db.execute(sql, args)]

    def indexed_chunks(self, kb_id: str) -> Iterator[Chunk]:
        """Every indexed chunk of the KB, whatever its document's status (for re-tokenising)."""
        rows = self._db.stream("SELECT * FROM chunks WHERE kb_id = ? AND indexed ORDER BY {rowid}", (kb_id,))
        yield from (_chunk(r) for r in rows)

    def set_tokens(self, kb_id: str, tokens: Iterable[tuple[str, list[str]]]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE chunks SET tokens = ? WHERE kb_id = ? AND id = ?",
                           [(" ".join(t), kb_id, cid) for cid, t in tokens])

    def ready_chunks(self, kb_id: str, chunk_ids: list[str]) -> dict[str, Chunk]:
        """The searchable chunks among ``chunk_ids``; ids of pending or deleted documents are absent."""
        out: dict[str, Chunk] = {}
        for start in range(0, len(chunk_ids), 500):
            part = chunk_ids[start:start + 500]
            marks = ",".join("?" * len(part))
            for r in self._db.execute(
                f"SELECT c.* FROM chunks c JOIN documents d ON d.kb_id = c.kb_id AND d.id = c.doc_id "
                f"WHERE c.kb_id = ? AND d.status = 'ready' AND c.id IN ({marks})", [kb_id, *part]):
                out[r["id"]] = _chunk(r)
        return out

    def chunks_at(self, kb_id: str, doc_id: str, positions: Iterable[int]) -> dict[int, Chunk]:
        """The chunks of one document at ``positions`` (its neighbours of a hit, for context), by position."""
        wanted = sorted({p for p in positions if p >= 0})
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(f"SELECT * FROM chunks WHERE kb_id = ? AND doc_id = ? AND position IN ({marks})",
                                [kb_id, doc_id, *wanted])
        return {r["position"]: _chunk(r) for r in rows}

    def document_chunks(self, kb_id: str, doc_id: str) -> list[tuple[Chunk, list[str] | None]]:
        """Every chunk of one document in insertion order, unindexed parents included, with its BM25 tokens
        (None for a chunk kept for context only): what ``add_pending_document`` took, for export."""
        rows = self._db.execute("SELECT * FROM chunks WHERE kb_id = ? AND doc_id = ? ORDER BY {rowid}",
                                (kb_id, doc_id))
        return [(_chunk(r), (r["tokens"].split(" ") if r["tokens"] else []) if r["indexed"] else None)
                for r in rows]

    def ready_chunk_count(self, kb_id: str) -> int:
        """Chunks (indexed or not) of the KB's ready documents, for an export header written before them."""
        row = self._db.execute("SELECT COUNT(*) FROM chunks c JOIN documents d ON d.kb_id = c.kb_id "
                               "AND d.id = c.doc_id WHERE c.kb_id = ? AND d.status = 'ready'", (kb_id,)).fetchone()
        return int(row[0])


def _chunk(r: Any) -> Chunk:
    return Chunk(id=r["id"], doc_id=r["doc_id"], source=r["source"], text=r["text"], position=r["position"],
                 start=r["start"], end=r["end"], metadata=json.loads(r["metadata"]))
