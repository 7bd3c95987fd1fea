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

The file is not trusted: an import checks what an ingest would. Lines are read up to ``max_import_line_mb`` (memory
stays bounded whatever a small gzip inflates to); the KB's settings go through ``build_splitter`` as a new KB's do,
its glossary through ``check_glossary`` as an edit's, and a model path is loaded only when RAG_EMBEDDER names it;
every chunk must agree with its document (``ExportReader``). Any problem refuses the import with its line.

Import is all or nothing. The whole file is checked first (decompressed and parsed, nothing written), so a truncated,
corrupt or contradictory file changes nothing, and ``replace`` deletes the existing KB only once the file is known
to be good.
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
import io
import json
import os
import re
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from tqdm import tqdm

from rag_service.admin.documents import delete_kb
from rag_service.errors import (
    ConfigError,
    EmbedderMismatchError,
    InvalidInputError,
    KnowledgeBaseExistsError,
    RagError,
    StoreError,
)
from rag_service.index.glossary import OPTION, check_glossary, tokenizer_with
from rag_service.ingestion.pipeline import build_splitter
from rag_service.models.embeddings import BUNDLED_EMBEDDERS, Embedder, get_embedder
from rag_service.records import Chunk
from rag_service.settings import Settings
from rag_service.storage.catalog import KnowledgeBase
from rag_service.storage.vectorstore import vector_metadata
from rag_service.workspace import Workspace, canonical_embedder

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
    line: int = 0  # in the file, for errors


@dataclass(frozen=True, slots=True)
class DocumentRecordIn:
    id: str
    source: str
    sha256: str
    chars: int | None
    created: str | None  # kept on import (None: the file did not say)
    chunks: list[ChunkRecord] = field(default_factory=list)
    format: str | None = None  # these three: absent from exports made before they were recorded
    pages: int | None = None
    ocr_pages: int | None = None
    line: int = 0  # in the file, for errors


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
                             "chars": doc.chars, "created": doc.created, "format": doc.format, "pages": doc.pages,
                             "ocr_pages": doc.ocr_pages}))
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
@dataclass(frozen=True, slots=True)
class ImportLimits:
    """What one export file may hold, from Settings: a line's length (memory is bounded by it, a line is never read
    whole past it) and a document's chunk count (an ingest's limit; one document's chunks are in memory at once)."""

    max_line_bytes: int
    max_chunks_per_document: int

    @classmethod
    def of(cls, settings: Settings) -> ImportLimits:
        return cls(int(settings.max_import_line_mb * 1024 * 1024), settings.max_chunks_per_document)


class ExportReader:
    """Streams an export file, one document (with its chunks) at a time, checking its structure, counts and
    provenance on the way; every problem is an InvalidInputError naming the file and the line. Use as a context
    manager.

    Provenance is checked, never repaired: a chunk must say what an ingest of its document would have made it say
    (its document's source, an id under its document's, its text exactly ``end - start`` characters inside the
    document, pages that only grow with the offset, a parent of its own document), and a document's id must be its
    sha256's first 16 digits, as ingest makes it. A file that contradicts itself was not written by ``rag export``:
    it is refused with the line, rather than quietly made consistent."""

    def __init__(self, path: Path, limits: ImportLimits) -> None:
        self.path = Path(path)
        self.limits = limits
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

    def _open(self) -> io.BufferedIOBase:
        """Binary, so a line is read up to a byte count (``readline(n)`` reads at most n bytes, decompressing as it
        goes) and decoded on its own."""
        try:
            with self.path.open("rb") as raw:
                gzipped = raw.read(2) == b"\x1f\x8b"
            return gzip.open(self.path, "rb") if gzipped else self.path.open("rb")
        except OSError as exc:
            raise InvalidInputError(f"cannot read {self.path}: {exc.strerror or exc}") from exc

    def _bad(self, problem: str, line: int | None = None) -> InvalidInputError:
        return InvalidInputError(f"{self.path}: refused: line {line or self._lineno}: {problem}")

    def _records(self) -> Iterator[dict[str, Any]]:
        cap = self.limits.max_line_bytes
        while True:
            try:
                raw = self._file.readline(cap + 1)
                if len(raw) > cap:
                    self._lineno += 1
                    raise self._bad(f"longer than {cap:,} bytes (max_import_line_mb); not read further")
                line = raw.decode("utf-8")
            except (EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:  # gzip.BadGzipFile is an OSError
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
        """The documents in file order, each checked whole; after the last one, the end line's counts are checked
        against what was read and against the header, and nothing may follow it."""
        records = self._records()
        doc: DocumentRecordIn | None = None
        docs = chunks = 0
        seen: set[str] = set()
        sources: set[str] = set()
        chunk_ids: set[str] = set()  # the current document's: ids start with the document's, so none repeats across
        for record in records:
            kind = record.get("type")
            if kind == "chunk":
                if doc is None:
                    raise self._bad("a chunk before any document")
                if len(doc.chunks) == self.limits.max_chunks_per_document:
                    raise self._bad(f"document {doc.source} has more than {self.limits.max_chunks_per_document:,} "
                                    "chunks (max_chunks_per_document)")
                chunk = self._chunk(record, doc)
                if chunk.chunk.id in chunk_ids:
                    raise self._bad(f"chunk {chunk.chunk.id} appears twice")
                chunk_ids.add(chunk.chunk.id)
                doc.chunks.append(chunk)
                continue
            if doc is not None:
                self._whole(doc)
                docs, chunks = docs + 1, chunks + len(doc.chunks)
                yield doc
                doc = None
                chunk_ids.clear()
            if kind == "document":
                doc = self._document(record)
                if doc.id in seen:
                    raise self._bad(f"document {doc.id} appears twice")
                if doc.source in sources:  # an ingest keeps one document per source
                    raise self._bad(f"a second document named {doc.source!r}")
                seen.add(doc.id)
                sources.add(doc.source)
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
        doc_id, source, sha = record["id"], record["source"], record["sha256"]
        if not _SHA256.fullmatch(sha) or doc_id != sha[:16]:
            raise self._bad(f"document {doc_id[:40]!r}: its id is not the first 16 digits of its sha256, as an "
                            "ingest makes it")
        if not source.strip() or not source.isprintable():
            raise self._bad(f"document {doc_id}: its source is empty or not printable")
        for key in ("chars", "pages", "ocr_pages"):
            value = record.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise self._bad(f"a document's {key!r} is not a non-negative integer")
        fmt = record.get("format")
        if fmt is not None and not (isinstance(fmt, str) and fmt.isidentifier() and len(fmt) <= 20):
            raise self._bad(f"document {doc_id}: 'format' is not a format name")
        created = record.get("created")
        if created is not None and created != "":
            try:
                datetime.fromisoformat(created)
            except (TypeError, ValueError):
                raise self._bad(f"document {doc_id}: 'created' is not an ISO date") from None
        return DocumentRecordIn(doc_id, source, sha, record.get("chars"), created or None, line=self._lineno,
                                format=fmt, pages=record.get("pages"), ocr_pages=record.get("ocr_pages"))

    def _chunk(self, record: dict[str, Any], doc: DocumentRecordIn) -> ChunkRecord:
        for key, kind in (("id", str), ("doc_id", str), ("source", str), ("position", int), ("text", str),
                          ("start", int), ("end", int), ("metadata", dict)):
            _need(record, key, kind, self._bad, "a chunk")
        cid, meta = record["id"], record["metadata"]
        if record["doc_id"] != doc.id:
            raise self._bad(f"chunk {cid} belongs to document {record['doc_id']}, not {doc.id}")
        if not cid.startswith(f"{doc.id}:"):
            raise self._bad(f"chunk {cid[:60]!r}: a chunk id of document {doc.id} starts with '{doc.id}:'")
        if record["source"] != doc.source:
            raise self._bad(f"chunk {cid}: its source {record['source'][:80]!r} is not its document's "
                            f"({doc.source!r})")
        start, end = record["start"], record["end"]
        if record["position"] < 0 or not 0 <= start <= end or (doc.chars is not None and end > doc.chars):
            raise self._bad(f"chunk {cid}: position {record['position']}, characters {start}-{end} are not inside "
                            f"its document ({doc.chars} characters)")
        if len(record["text"]) != end - start:
            raise self._bad(f"chunk {cid}: its text is {len(record['text'])} characters, its offsets say "
                            f"{end - start}")
        page = meta.get("page")
        if page is not None and (not isinstance(page, int) or isinstance(page, bool) or page < 1
                                 or (isinstance(meta.get("pages"), int) and page > meta["pages"])):
            raise self._bad(f"chunk {cid}: page {page!r} is not a page of its document")
        headings = meta.get("headings")
        if headings is not None and not (isinstance(headings, list) and all(isinstance(h, str) for h in headings)):
            raise self._bad(f"chunk {cid}: 'headings' is not a list of strings")
        tokens, encoded = record.get("tokens"), record.get("vector")
        if tokens is not None and not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
            raise self._bad(f"chunk {cid}: 'tokens' is not a list of strings or null")
        if (tokens is None) != (meta.get("role") == "parent"):  # ingest indexes every chunk but a parent section
            raise self._bad(f"chunk {cid}: only a parent section (metadata role 'parent') is unindexed "
                            "(tokens null)")
        vector = None
        if encoded is not None:
            if tokens is None:
                raise self._bad(f"chunk {cid} has a vector but is not indexed (tokens null)")
            vector = self._vector(cid, encoded)
        chunk = Chunk(id=cid, doc_id=doc.id, source=doc.source, text=record["text"], position=record["position"],
                      start=start, end=end, metadata=meta)
        return ChunkRecord(chunk, tokens, vector, line=self._lineno)

    def _whole(self, doc: DocumentRecordIn) -> None:
        """What only a whole document tells: every chunk has a page or none does, pages never go back as the
        offsets grow (a chunk's page is the one its first character is on), and a child's parent is a parent
        section of this document."""
        paged = [c for c in doc.chunks if "page" in c.chunk.metadata]
        if paged and len(paged) != len(doc.chunks):
            odd = next(c for c in doc.chunks if "page" not in c.chunk.metadata)
            raise self._bad(f"chunk {odd.chunk.id} has no page where the other chunks of {doc.source} have one",
                            odd.line)
        last = (0, 0)
        for c in sorted(paged, key=lambda c: c.chunk.start):
            if c.chunk.metadata["page"] < last[0]:
                raise self._bad(f"chunk {c.chunk.id}: page {c.chunk.metadata['page']} at character {c.chunk.start}, "
                                f"after page {last[0]} at character {last[1]}", c.line)
            last = (c.chunk.metadata["page"], c.chunk.start)
        parents = {c.chunk.id for c in doc.chunks if c.chunk.metadata.get("role") == "parent"}
        for c in doc.chunks:
            parent = c.chunk.metadata.get("parent_id")
            if parent is not None and parent not in parents:
                raise self._bad(f"chunk {c.chunk.id}: its parent {str(parent)[:60]!r} is not a parent section of "
                                f"{doc.source}", c.line)

    def _vector(self, chunk_id: str, encoded: Any) -> np.ndarray:
        dim = self.header.kb["dim"]
        try:
            raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else b""
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 4 * dim:
            raise self._bad(f"chunk {chunk_id}: 'vector' is not base64 of {dim} float32 values")
        vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if not np.isfinite(vector).all():
            raise self._bad(f"chunk {chunk_id}: 'vector' holds NaN or infinity")
        return vector


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _need(record: dict[str, Any], key: str, kind: type, bad: Any, what: str) -> None:
    value = record.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(f"{what} lacks '{key}' ({kind.__name__})")


# -- import ---------------------------------------------------------------------------------------------------
def import_kb(ws: Workspace, path: Path, *, name: str | None = None, replace: bool = False,
              progress: bool = False) -> TransferResult:
    """Create a knowledge base from an export file (see the module docstring for what happens on failure)."""
    limits = ImportLimits.of(ws.settings)
    with ExportReader(path, limits) as reader:
        header = reader.header
    target = (name if name is not None else header.kb["name"]).strip()
    clash = KnowledgeBaseExistsError(f"knowledge base '{target}' already exists: import with --replace to "
                                     "overwrite it, or with --kb NEWNAME to import under another name")
    if not replace and _kb_named(ws, target) is not None:  # before the slow parts
        raise clash
    embedder = _embedder(ws, header, path, target)
    options = _options(ws, header, embedder, path)
    _check(path, header, limits, progress)
    existing = _kb_named(ws, target)
    if existing is not None:
        if not replace:
            raise clash
        delete_kb(ws, existing)
    settings = header.kb
    tokenizer = tokenizer_with(ws.tokenizer, options)  # the new KB's, glossary included
    with ws.write_lock():
        if _kb_named(ws, target) is not None:
            raise KnowledgeBaseExistsError(f"knowledge base '{target}' was created meanwhile; import again")
        kb = ws.catalog.create_kb(
            target, embedder=embedder.name, dim=embedder.dim, splitter=settings["splitter"],
            chunk_size=settings["chunk_size"], chunk_overlap=settings["chunk_overlap"],
            chunk_unit=settings["chunk_unit"], options={**options, "tokenizer": tokenizer.version})
    try:
        return _fill(ws, kb, embedder, path, limits, retokenise=options.get("tokenizer") != tokenizer.version,
                     progress=progress)
    except BaseException:
        with contextlib.suppress(Exception):  # the original failure is what the user needs to see
            delete_kb(ws, kb)
        raise


def _embedder(ws: Workspace, header: ExportHeader, path: Path, target: str) -> Embedder:
    """The file's embedder, loaded here: its vectors are only usable with the same model. A model directory (not
    'e5' or 'minilm') is loaded only when this deployment is configured with it (RAG_EMBEDDER), as for any new KB:
    a file does not choose which files of this host are loaded as a model. Refused too when this deployment is
    configured for another embedder, which would refuse every search of the new KB."""
    name, dim = header.kb["embedder"], header.kb["dim"]
    if name not in BUNDLED_EMBEDDERS and name != canonical_embedder(ws.settings.embedder):
        raise EmbedderMismatchError(f"{path}: refused: line 1: embedder {name[:200]!r} is a model path; import "
                                    "with RAG_EMBEDDER set to it to load that model here")
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


def _options(ws: Workspace, header: ExportHeader, embedder: Embedder, path: Path) -> dict[str, Any]:
    """The new KB's settings checked as any new KB's are (``build_splitter``: a known splitter, chunk bounds, chunk
    unit) and its options as any edit's (the glossary by ``check_glossary``); returns the options to store. A KB
    has no other options (nothing else sets one), so any other key is refused, never stored."""
    kb = header.kb
    try:
        build_splitter(ws.settings, embedder, kb["chunk_unit"], kb["splitter"], kb["chunk_size"],
                       kb["chunk_overlap"])
        unknown = sorted(set(kb["options"]) - {"tokenizer", OPTION})
        if unknown:
            raise InvalidInputError(f"options {', '.join(repr(k[:40]) for k in unknown[:5])} are not options of a "
                                    "knowledge base")
        tokenizer = kb["options"].get("tokenizer")
        if tokenizer is not None and not isinstance(tokenizer, str):
            raise InvalidInputError("option 'tokenizer' is not a string")
        options: dict[str, Any] = {} if tokenizer is None else {"tokenizer": tokenizer}
        if OPTION in kb["options"]:
            options[OPTION] = [e.to_json() for e in check_glossary(ws.settings, kb["options"][OPTION])]
    except (ConfigError, InvalidInputError) as exc:
        raise InvalidInputError(f"{path}: refused: line 1: {exc}") from None
    return options


def _check(path: Path, header: ExportHeader, limits: ImportLimits, progress: bool) -> None:
    """Read the whole file without writing anything, so a damaged one is refused before any change."""
    with ExportReader(path, limits) as reader, tqdm(total=header.chunks, desc="checking", unit="chunk",
                                                     disable=not progress, delay=_PROGRESS_DELAY) as bar:
        for doc in reader.documents():
            bar.update(len(doc.chunks))


def _kb_named(ws: Workspace, name: str) -> KnowledgeBase | None:
    """By name only (``find_kb`` also matches ids, and a new name may look like another KB's id)."""
    return next((kb for kb in ws.catalog.list_kbs() if kb.name == name), None)


def _fill(ws: Workspace, kb: KnowledgeBase, embedder: Embedder, path: Path, limits: ImportLimits, *,
          retokenise: bool, progress: bool) -> TransferResult:
    docs = chunks = missing = 0
    with ExportReader(path, limits) as reader, tqdm(total=reader.header.chunks, desc=f"importing {kb.name}",
                                                     unit="chunk", disable=not progress,
                                                     delay=_PROGRESS_DELAY) as bar:
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
                                            tokens, doc.chars, doc.created, fmt=doc.format, pages=doc.pages,
                                            ocr_pages=doc.ocr_pages)
            ws.vectors.upsert(kb.collection, embedder.name, [c.chunk.id for c in indexed], vectors,
                              [vector_metadata(c.chunk) for c in indexed])
        except RagError:
            raise
        except Exception as exc:  # a constraint the file broke (a chunk id of another document), index errors
            raise StoreError(f"cannot store document {doc.source}: {exc}") from exc
        ws.catalog.set_status(kb.id, doc.id, "ready")
    return len(absent)
