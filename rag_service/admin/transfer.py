"""Moving a knowledge base between deployments (embedded SQLite ⇄ PostgreSQL) and backing one up, as one file.

Format ``rag-service-kb`` version 1: gzip-compressed JSON Lines (plain JSON Lines is read too).

- a header: ``{"format", "version", "exported", "kb": {name, embedder, dim, splitter, chunk_size, chunk_overlap,
  chunk_unit, options}, "documents": N, "chunks": M}``;
- per ready document a ``{"type": "document", id, source, sha256, chars, created}`` line, then its chunks in
  insertion order: ``{"type": "chunk", id, doc_id, source, position, text, start, end, metadata, tokens, vector}``
  (``tokens`` null for an unindexed parent chunk; ``vector`` base64 of little-endian float32, null when unindexed);
- ``{"type": "end", "documents": N, "chunks": M}`` last, so a truncated file is told from a complete one.

Vectors and BM25 tokens travel with the chunks, so an import embeds nothing (only an indexed chunk exported without
its vector is embedded again) and re-tokenises only when this install's tokenizer version differs from the file's.

Import is all or nothing. The whole file is checked first (decompressed and parsed, nothing written), so a truncated
or corrupt file changes nothing, and ``replace`` deletes the existing KB only once the file is known to be good.
The documents are then written one by one in ingest's crash-safe order (pending rows, vectors, ready); if that
fails anyway (the file changed meanwhile, a store error, Ctrl-C) the new KB is deleted again. Only a hard kill
mid-import leaves the new KB holding the documents written so far, each complete (at most one pending, which the
next ingest purges); importing again with ``replace`` finishes the job.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import json
import os
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from rag_service.admin.documents import delete_kb
from rag_service.errors import (
    EmbedderMismatchError,
    InvalidInputError,
    KnowledgeBaseExistsError,
    RagError,
    StoreError,
)
from rag_service.index.glossary import tokenizer_with
from rag_service.models.embeddings import Embedder, get_embedder
from rag_service.records import Chunk
from rag_service.storage.catalog import KnowledgeBase
from rag_service.storage.vectorstore import vector_metadata
from rag_service.workspace import Workspace

FORMAT = "rag-service-kb"
VERSION = 1
_PROGRESS_DELAY = 1.0  # seconds before a progress bar appears: big files get one, small ones stay quiet


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What an export or import moved. ``missing_vectors``: indexed chunks whose vector was absent from the vector
    index (exported as null) or from the file (embedded again on import)."""

    kb: str
    documents: int
    chunks: int
    missing_vectors: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"kb": self.kb, "documents": self.documents, "chunks": self.chunks}


@dataclass(frozen=True, slots=True)
class ExportHeader:
    kb: dict[str, Any]
    documents: int
    chunks: int
    exported: str


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    chunk: Chunk
    tokens: list[str] | None  # None: kept for context only (a parent section), never indexed
    vector: np.ndarray | None


@dataclass(frozen=True, slots=True)
class DocumentRecordIn:
    id: str
    source: str
    sha256: str
    chars: int | None
    created: str | None  # kept on import (None: the file did not say)
    chunks: list[ChunkRecord] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


# -- export ---------------------------------------------------------------------------------------------------
def export_kb(ws: Workspace, kb_name: str, path: Path, *, progress: bool = False) -> TransferResult:
    """Write the KB's ready documents to ``path``. Holds the write lock throughout: the catalog and the vector index
    share no transaction, so an ingest or delete between reading a document's chunks and its vectors would export one
    without the other (searches are not blocked). Written to a temporary file renamed at the end, so an interrupted
    export never leaves a file at ``path``."""
    kb = ws.catalog.get_kb(kb_name)
    path = Path(path)
    if not path.parent.is_dir():
        raise InvalidInputError(f"cannot write {path}: no such directory {path.parent}")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with ws.write_lock():
            kb = ws.catalog.get_kb(kb.id)  # as of now, under the lock (deleted meanwhile: not found)
            result = _write(ws, kb, tmp, progress)
        os.replace(tmp, path)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return result


def _write(ws: Workspace, kb: KnowledgeBase, tmp: Path, progress: bool) -> TransferResult:
    docs = ws.catalog.documents(kb.id, status="ready")
    total = ws.catalog.ready_chunk_count(kb.id)
    written = missing = 0
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as out, \
            tqdm(total=total, desc=f"exporting {kb.name}", unit="chunk", disable=not progress,
                 delay=_PROGRESS_DELAY) as bar:
        out.write(_line({
            "format": FORMAT, "version": VERSION, "exported": _now(),
            "kb": {"name": kb.name, "embedder": kb.embedder, "dim": kb.dim, "splitter": kb.splitter,
                   "chunk_size": kb.chunk_size, "chunk_overlap": kb.chunk_overlap, "chunk_unit": kb.chunk_unit,
                   "options": kb.options},
            "documents": len(docs), "chunks": total}))
        for doc in docs:  # one document's chunks and vectors in memory at a time
            rows = ws.catalog.document_chunks(kb.id, doc.id)
            try:
                vectors = ws.vectors.vectors(kb.collection, [c.id for c, tokens in rows if tokens is not None])
            except Exception as exc:  # the index's own errors (collection gone, server down) are not RagErrors
                raise StoreError(f"cannot read the vectors of {doc.source} from the vector index: {exc}") from exc
            out.write(_line({"type": "document", "id": doc.id, "source": doc.source, "sha256": doc.sha256,
                             "chars": doc.chars, "created": doc.created}))
            for chunk, tokens in rows:
                vector = vectors.get(chunk.id) if tokens is not None else None
                missing += tokens is not None and vector is None
                out.write(_line({"type": "chunk", "id": chunk.id, "doc_id": chunk.doc_id, "source": chunk.source,
                                 "position": chunk.position, "text": chunk.text, "start": chunk.start,
                                 "end": chunk.end, "metadata": chunk.metadata, "tokens": tokens,
                                 "vector": None if vector is None else _encode_vector(vector)}))
            written += len(rows)
            bar.update(len(rows))
        out.write(_line({"type": "end", "documents": len(docs), "chunks": written}))
    return TransferResult(kb.name, len(docs), written, missing)


# -- reading --------------------------------------------------------------------------------------------------
class ExportReader:
    """Streams an export file, one document (with its chunks) at a time, checking its structure and counts on the
    way; every problem is an InvalidInputError naming the file and the line. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = self._open()
        self._lineno = 0
        try:
            self.header = self._header()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ExportReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _open(self) -> IO[str]:
        try:
            with self.path.open("rb") as raw:
                gzipped = raw.read(2) == b"\x1f\x8b"
            if gzipped:
                return gzip.open(self.path, "rt", encoding="utf-8")
            return self.path.open(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot read {self.path}: {exc.strerror or exc}") from exc

    def _bad(self, problem: str) -> InvalidInputError:
        return InvalidInputError(f"{self.path}: not a complete knowledge base export: line {self._lineno}: {problem}")

    def _records(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                line = self._file.readline()
            except (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError) as exc:
                raise InvalidInputError(f"{self.path}: truncated or corrupt after line {self._lineno} "
                                        f"({exc})") from exc
            if not line:
                return
            self._lineno += 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise self._bad(f"not JSON ({exc.msg}); the file is truncated or corrupt") from exc
            if not isinstance(record, dict):
                raise self._bad("not a JSON object")
            yield record

    def _header(self) -> ExportHeader:
        first = next(self._records(), None)
        if first is None:
            raise InvalidInputError(f"{self.path}: empty file, not a knowledge base export")
        if first.get("format") != FORMAT:
            raise InvalidInputError(f"{self.path}: not a knowledge base export (no '{FORMAT}' header)")
        if first.get("version") != VERSION:
            raise InvalidInputError(f"{self.path}: export format version {first.get('version')!r} is not supported "
                                    f"(this build reads version {VERSION})")
        kb = first.get("kb")
        if not isinstance(kb, dict):
            raise self._bad("the header has no 'kb' object")
        for key, kind in (("name", str), ("embedder", str), ("dim", int), ("splitter", str), ("chunk_size", int),
                          ("chunk_overlap", int), ("chunk_unit", str), ("options", dict)):
            _need(kb, key, kind, self._bad, "the header's kb")
        for key in ("documents", "chunks"):
            _need(first, key, int, self._bad, "the header")
        return ExportHeader(kb, first["documents"], first["chunks"], str(first.get("exported", "")))

    def documents(self) -> Iterator[DocumentRecordIn]:
        """The documents in file order; after the last one, the end line's counts are checked against what was
        read and against the header, and nothing may follow it."""
        records = self._records()
        doc: DocumentRecordIn | None = None
        docs = chunks = 0
        seen: set[str] = set()
        for record in records:
            kind = record.get("type")
            if kind == "chunk":
                if doc is None:
                    raise self._bad("a chunk before any document")
                doc.chunks.append(self._chunk(record, doc))
                continue
            if doc is not None:
                docs, chunks = docs + 1, chunks + len(doc.chunks)
                yield doc
                doc = None
            if kind == "document":
                doc = self._document(record)
                if doc.id in seen:
                    raise self._bad(f"document {doc.id} appears twice")
                seen.add(doc.id)
            elif kind == "end":
                counts = (record.get("documents"), record.get("chunks"))
                if counts != (docs, chunks) or counts != (self.header.documents, self.header.chunks):
                    raise self._bad(f"the file holds {docs} documents and {chunks} chunks, its header says "
                                    f"{self.header.documents} and {self.header.chunks}, its end line "
                                    f"{counts[0]} and {counts[1]}")
                if next(records, None) is not None:
                    raise self._bad("data after the end line")
                return
            else:
                raise self._bad(f"unknown record type {kind!r}")
        raise InvalidInputError(
            f"{self.path}: truncated: no end line after line {self._lineno} ({docs + (doc is not None)} of "
            f"{self.header.documents} documents)")

    def _document(self, record: dict[str, Any]) -> DocumentRecordIn:
        for key in ("id", "source", "sha256"):
            _need(record, key, str, self._bad, "a document")
        chars = record.get("chars")
        if chars is not None and not isinstance(chars, int):
            raise self._bad("a document's 'chars' is not an integer")
        created = record.get("created")
        return DocumentRecordIn(record["id"], record["source"], record["sha256"], chars,
                                created if isinstance(created, str) and created else None)

    def _chunk(self, record: dict[str, Any], doc: DocumentRecordIn) -> ChunkRecord:
        for key, kind in (("id", str), ("doc_id", str), ("source", str), ("position", int), ("text", str),
                          ("start", int), ("end", int), ("metadata", dict)):
            _need(record, key, kind, self._bad, "a chunk")
        if record["doc_id"] != doc.id:
            raise self._bad(f"chunk {record['id']} belongs to document {record['doc_id']}, not {doc.id}")
        if any(c.chunk.id == record["id"] for c in doc.chunks):
            raise self._bad(f"chunk {record['id']} appears twice")
        tokens, encoded = record.get("tokens"), record.get("vector")
        if tokens is not None and not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
            raise self._bad(f"chunk {record['id']}: 'tokens' is not a list of strings or null")
        vector = None
        if encoded is not None:
            if tokens is None:
                raise self._bad(f"chunk {record['id']} has a vector but is not indexed (tokens null)")
            vector = self._vector(record["id"], encoded)
        chunk = Chunk(id=record["id"], doc_id=doc.id, source=record["source"], text=record["text"],
                      position=record["position"], start=record["start"], end=record["end"],
                      metadata=record["metadata"])
        return ChunkRecord(chunk, tokens, vector)

    def _vector(self, chunk_id: str, encoded: Any) -> np.ndarray:
        dim = self.header.kb["dim"]
        try:
            raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 4 * dim:
            raise self._bad(f"chunk {chunk_id}: 'vector' is not base64 of {dim} float32 values")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def _need(record: dict[str, Any], key: str, kind: type, bad: Any, what: str) -> None:
    value = record.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(f"{what} lacks '{key}' ({kind.__name__})")


# -- import ---------------------------------------------------------------------------------------------------
def import_kb(ws: Workspace, path: Path, *, name: str | None = None, replace: bool = False,
              progress: bool = False) -> TransferResult:
    """Create a knowledge base from an export file (see the module docstring for what happens on failure)."""
    with ExportReader(path) as reader:
        header = reader.header
    target = (name if name is not None else header.kb["name"]).strip()
    clash = KnowledgeBaseExistsError(f"knowledge base '{target}' already exists: import with --replace to "
                                     "overwrite it, or with --kb NEWNAME to import under another name")
    if not replace and _kb_named(ws, target) is not None:  # before the slow parts
        raise clash
    embedder = _embedder(ws, header, path, target)
    _check(path, header, progress)
    existing = _kb_named(ws, target)
    if existing is not None:
        if not replace:
            raise clash
        delete_kb(ws, existing)
    settings = header.kb
    tokenizer = tokenizer_with(ws.tokenizer, settings["options"])  # the new KB's, glossary included
    with ws.write_lock():
        if _kb_named(ws, target) is not None:
            raise KnowledgeBaseExistsError(f"knowledge base '{target}' was created meanwhile; import again")
        kb = ws.catalog.create_kb(
            target, embedder=embedder.name, dim=embedder.dim, splitter=settings["splitter"],
            chunk_size=settings["chunk_size"], chunk_overlap=settings["chunk_overlap"],
            chunk_unit=settings["chunk_unit"], options={**settings["options"], "tokenizer": tokenizer.version})
    try:
        return _fill(ws, kb, embedder, path, retokenise=settings["options"].get("tokenizer") != tokenizer.version,
                     progress=progress)
    except BaseException:
        with contextlib.suppress(Exception):  # the original failure is what the user needs to see
            delete_kb(ws, kb)
        raise


def _embedder(ws: Workspace, header: ExportHeader, path: Path, target: str) -> Embedder:
    """The file's embedder, loaded here: its vectors are only usable with the same model. Refused too when this
    deployment is configured for another embedder (RAG_EMBEDDER), which would refuse every search of the new KB."""
    name, dim = header.kb["embedder"], header.kb["dim"]
    try:
        embedder = get_embedder(name)
    except RagError as exc:
        raise EmbedderMismatchError(f"{path} was built with embedder '{name}', which is not available here: "
                                    f"{exc}") from exc
    if embedder.dim != dim:
        raise EmbedderMismatchError(f"{path} holds {dim}-d vectors but embedder '{name}' here produces "
                                    f"{embedder.dim}-d vectors")
    settings = header.kb
    ws.embedder_for(KnowledgeBase("", target, embedder.name, dim, settings["splitter"], settings["chunk_size"],
                                  settings["chunk_overlap"], header.exported))
    return embedder


def _check(path: Path, header: ExportHeader, progress: bool) -> None:
    """Read the whole file without writing anything, so a damaged one is refused before any change."""
    with ExportReader(path) as reader, tqdm(total=header.chunks, desc="checking", unit="chunk",
                                             disable=not progress, delay=_PROGRESS_DELAY) as bar:
        for doc in reader.documents():
            bar.update(len(doc.chunks))


def _kb_named(ws: Workspace, name: str) -> KnowledgeBase | None:
    """By name only (``find_kb`` also matches ids, and a new name may look like another KB's id)."""
    return next((kb for kb in ws.catalog.list_kbs() if kb.name == name), None)


def _fill(ws: Workspace, kb: KnowledgeBase, embedder: Embedder, path: Path, *, retokenise: bool,
          progress: bool) -> TransferResult:
    docs = chunks = missing = 0
    with ExportReader(path) as reader, tqdm(total=reader.header.chunks, desc=f"importing {kb.name}", unit="chunk",
                                             disable=not progress, delay=_PROGRESS_DELAY) as bar:
        for doc in reader.documents():
            missing += _store(ws, kb, embedder, doc, retokenise)
            docs, chunks = docs + 1, chunks + len(doc.chunks)
            bar.update(len(doc.chunks))
    return TransferResult(kb.name, docs, chunks, missing)


def _store(ws: Workspace, kb: KnowledgeBase, embedder: Embedder, doc: DocumentRecordIn, retokenise: bool) -> int:
    """One document in ingest's crash-safe order (pending rows, vectors, ready) under the write lock; returns how
    many of its vectors had to be embedded again."""
    tokens = [ws.tokenizer_for(kb)(c.chunk.index_text) if retokenise and c.tokens is not None else c.tokens
              for c in doc.chunks]
    indexed = [c for c in doc.chunks if c.tokens is not None]
    absent = [c for c in indexed if c.vector is None]
    made = iter(embedder.embed_documents([c.chunk.index_text for c in absent]) if absent else [])
    vectors = (np.stack([c.vector if c.vector is not None else next(made) for c in indexed]) if indexed
               else np.zeros((0, embedder.dim), dtype=np.float32))
    with ws.write_lock():
        if ws.catalog.find_kb(kb.id) is None:
            raise RagError(f"knowledge base '{kb.name}' was deleted during the import")
        try:
            ws.catalog.add_pending_document(kb.id, doc.id, doc.source, doc.sha256, [c.chunk for c in doc.chunks],
                                            tokens, doc.chars, doc.created)
            ws.vectors.upsert(kb.collection, embedder.name, [c.chunk.id for c in indexed], vectors,
                              [vector_metadata(c.chunk) for c in indexed])
        except RagError:
            raise
        except Exception as exc:  # a constraint the file broke (a chunk id of another document), index errors
            raise StoreError(f"cannot store document {doc.source}: {exc}") from exc
        ws.catalog.set_status(kb.id, doc.id, "ready")
    return len(absent)
