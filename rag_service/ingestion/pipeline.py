"""load → clean → split → embed → store, one file at a time, safe to kill at any point.

Order of writes per document: catalog rows as ``pending`` (one transaction), vectors into the vector index,
then ``ready``. Only ready documents are searchable; pending leftovers of a killed run are purged at
the next start. A changed file replaces the old version only after the new one is ready. One writer at a
time per catalog (the backend's write lock: a file lock, or a PostgreSQL advisory lock across hosts), so that
purge never touches another run's pending work.
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rag_service.errors import ConfigError, DocumentExistsError, IngestCancelledError, InvalidInputError, RagError
from rag_service.index.lexical import ensure_tokens
from rag_service.ingestion.loaders import LoadLimits, load, read_bytes
from rag_service.ingestion.sandbox import ParseWorker
from rag_service.ingestion.splitters import Splitter, make_splitter
from rag_service.models.embeddings import Embedder, get_embedder
from rag_service.records import Chunk, Document
from rag_service.settings import CHUNK_UNITS, Settings, chunking_problem
from rag_service.storage.catalog import KnowledgeBase
from rag_service.storage.vectorstore import vector_metadata
from rag_service.text.language import has_words
from rag_service.workspace import Workspace, canonical_embedder

log = logging.getLogger("rag_service.ingestion.pipeline")
# The share of a file's progress that its OCR stands for, when it needs OCR: a page takes seconds to read and its
# chunks a fraction of that to embed (docs/benchmarks.md "OCR engines").
OCR_SHARE = 0.9


@dataclass(slots=True)
class FileResult:
    path: str
    status: str  # added | replaced | unchanged | failed
    doc_id: str | None = None
    source: str | None = None
    chunks: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class SplitOptions:
    """Per-ingest overrides of the KB's stored splitter settings (None keeps the KB's value)."""

    splitter: str | None = None
    chunk_size: int | None = None
    chunk_overlap: int | None = None


def discover(paths: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """(file, source name): a named file keeps its base name; a directory's files keep their path
    relative to the directory's parent. Hidden files and directories are skipped. A name that is not UTF-8 (a
    Latin-1 file name on Linux) gets U+FFFD for its undecodable bytes in the source name, which is stored as text."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        file = Path(root) / name
                        yield file, _text_name(file.relative_to(path.parent).as_posix())
        else:
            yield path, _text_name(path.name)


def _text_name(name: str) -> str:
    return os.fsencode(name).decode("utf-8", "replace")


def with_pages(chunks: list[Chunk], doc: Document) -> list[Chunk]:
    """Give each chunk the page its first character is on, for documents that have pages, and say when that page's
    text came from OCR (with the engine's confidence), so a citation can tell the reader."""
    starts = doc.metadata.get("page_starts")
    if not starts:
        return chunks
    offsets = [offset for offset, _ in starts]
    ocr_pages: dict[int, float] = doc.metadata.get("ocr_pages") or {}
    out = []
    for c in chunks:
        page = starts[max(bisect.bisect_right(offsets, c.start) - 1, 0)][1]
        read = {"ocr": True, "ocr_confidence": ocr_pages[page]} if page in ocr_pages else {}
        out.append(replace(c, metadata={**c.metadata, "page": page, **read}))
    return out


def build_splitter(settings: Settings, embedder: Embedder, unit: str, splitter: str, size: int,
                   overlap: int) -> Splitter:
    """The splitter of a KB with these settings; a ConfigError names the setting that is refused. Every path that
    creates a KB (``rag ingest``, POST /v1/kbs, ``rag import``) validates its settings here."""
    if unit not in CHUNK_UNITS:
        raise ConfigError(f"chunk_unit must be one of {', '.join(CHUNK_UNITS)}, not {unit!r}")
    problem = chunking_problem(settings, size, overlap)
    if problem:
        raise ConfigError(problem)
    length: Callable[[str], int] = embedder.count_tokens if unit == "tokens" else len
    return make_splitter(splitter, size, overlap, length=length, embed=embedder.embed_documents)


class Ingestor:
    def __init__(self, workspace: Workspace, kb: KnowledgeBase, options: SplitOptions = SplitOptions(), *,
                 progress: bool = False, replace: bool = True, parser: ParseWorker | None = None,
                 on_progress: Callable[[float], None] | None = None,
                 carry_on: Callable[[], bool] | None = None) -> None:
        """``replace``: a file whose source name belongs to a different document replaces it (the CLI's
        path semantics); False refuses such a file (REST uploads, whose base names can collide). ``parser``:
        parse files in that sandboxed child process (``rag serve``) instead of in this one. ``on_progress``: called
        after each embedded batch with the share of the document's chunks embedded (upload jobs report it).
        ``carry_on``: asked after each embedded batch and before a file is stored; False stops the run with
        IngestCancelledError (an upload job was cancelled), keeping the files stored before."""
        self.ws = workspace
        self.on_progress = on_progress
        self.carry_on = carry_on
        self.replace = replace
        self.parser = parser
        self.kb = kb
        self.embedder = workspace.embedder_for(kb)
        self.splitter = build_splitter(
            workspace.settings, self.embedder, kb.chunk_unit, options.splitter or kb.splitter,
            options.chunk_size if options.chunk_size is not None else kb.chunk_size,
            options.chunk_overlap if options.chunk_overlap is not None else kb.chunk_overlap,
        )
        self.progress = progress
        # Whether the file in hand needed OCR (its progress then has two phases). Upload jobs run one file at a time;
        # a multi-file run prefetches the next file, but reports no progress.
        self._ocr = False
        self._ocr_bar: tqdm[None] | None = None

    @classmethod
    def open(cls, workspace: Workspace, kb_name: str, options: SplitOptions = SplitOptions(), *,
             progress: bool = False) -> tuple[Ingestor, bool]:
        """An ingestor for the named KB, creating the KB (with ``options`` as its stored splitter
        settings) when it does not exist yet. Settings are validated before anything is created."""
        kb = workspace.catalog.find_kb(kb_name)
        if kb is not None:
            return cls(workspace, kb, options, progress=progress), False
        s = workspace.settings
        splitter = options.splitter or s.splitter
        size = options.chunk_size if options.chunk_size is not None else s.chunk_size
        overlap = options.chunk_overlap if options.chunk_overlap is not None else s.chunk_overlap
        build_splitter(s, get_embedder(canonical_embedder(s.embedder)), s.chunk_unit, splitter, size, overlap)
        kb = workspace.create_kb(kb_name, splitter=splitter, chunk_size=size, chunk_overlap=overlap)
        return cls(workspace, kb, progress=progress), True

    def recover(self) -> int:
        """Purge documents a killed run left pending; returns how many."""
        pending = self.ws.catalog.documents(self.kb.id, status="pending")
        for doc in pending:
            self._remove(doc.id)
        return len(pending)

    def _remove(self, doc_id: str) -> None:
        self.ws.remove_document(self.kb, doc_id)

    def run(self, paths: Iterable[Path]) -> list[FileResult]:
        """Ingest files and directories; a bad file is reported in its result, the rest go on."""
        return self._run([(_text_name(str(file)), source, functools.partial(self._load_file, file, source))
                          for file, source in discover(paths)])

    def run_documents(self, docs: Iterable[Document]) -> list[FileResult]:
        """Ingest documents that were loaded elsewhere (evaluation data sets, custom loaders)."""
        return self._run([(doc.source, doc.source, functools.partial(_same, doc)) for doc in docs])

    def _run(self, items: list[tuple[str, str, Callable[[], Document]]]) -> list[FileResult]:
        """One file after another; the next file is read and parsed in a helper thread while this one is
        embedded (the embedders release the GIL), so parsing a PDF costs no embedding time."""
        results = []
        with self.ws.write_lock():
            self.recover()
            ensure_tokens(self.ws, self.kb)
        bar = tqdm(items, desc="ingesting", unit="file", disable=not self.progress or len(items) < 2)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-load") as loader:
            following = loader.submit(items[0][2]) if items else None
            for i, (label, source, _) in enumerate(bar):
                bar.set_postfix_str(source[-40:], refresh=False)
                current, following = following, loader.submit(items[i + 1][2]) if i + 1 < len(items) else None
                assert current is not None
                try:
                    results.append(self._ingest(label, current.result()))
                except IngestCancelledError:
                    raise
                except RagError as exc:
                    results.append(FileResult(path=label, status="failed", source=source, error=str(exc)))
                except Exception as exc:  # a library's failure on this file (a crafted one): it fails alone
                    log.error("ingesting %s failed", label, exc_info=True)
                    results.append(FileResult(path=label, status="failed", source=source, error=(
                        f"{source}: internal error ({type(exc).__name__}) while ingesting; see the log")))
        return results

    def _check_carry_on(self) -> None:
        if self.carry_on is not None and not self.carry_on():
            raise IngestCancelledError("the ingest was cancelled")

    def _load_file(self, path: Path, source: str) -> Document:
        if not path.is_file():
            raise InvalidInputError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
        settings = self.ws.settings
        max_bytes, limits = int(settings.max_file_mb * 1024 * 1024), LoadLimits.of(settings)
        self._ocr = False
        if self.parser is not None:
            return self.parser.load(path, source, max_bytes=max_bytes, json_text_field=settings.json_text_field,
                                    limits=limits, on_progress=self._parse_progress, carry_on=self.carry_on)
        raw = read_bytes(path, max_bytes)
        return load(path, source, raw, json_text_field=settings.json_text_field, limits=limits,
                    progress=self._parse_progress)

    def _parse_progress(self, done: int, total: int) -> None:
        """OCR pages read so far: the first OCR_SHARE of the file's progress (then embedding, ``_embed``); at a
        terminal (``progress``), a bar of pages."""
        self._ocr = True
        if self.on_progress is not None:
            self.on_progress(OCR_SHARE * done / max(total, 1))
        if self.progress:
            if self._ocr_bar is None:
                self._ocr_bar = tqdm(total=total, desc="reading pages (OCR)", unit="page", leave=False)
            self._ocr_bar.update(done - self._ocr_bar.n)
            if done >= total:
                self._ocr_bar.close()
                self._ocr_bar = None

    def _unchanged(self, label: str, doc: Document) -> FileResult | None:
        existing = self.ws.catalog.get_document(self.kb.id, doc.id)
        if existing is not None and existing.status == "ready":
            return FileResult(label, "unchanged", doc.id, existing.source, existing.chunks)
        return None

    def _ingest(self, label: str, doc: Document) -> FileResult:
        """Split and embed without the write lock (minutes for a big file, and deletes and other writers must not
        wait for that); store under it, in the crash-safe order, after checking again what may have changed."""
        unchanged = self._unchanged(label, doc)
        if unchanged is not None:
            return unchanged
        if not self.replace:
            check_no_collision(self.ws, self.kb, [(doc.source, doc.id)])
        # A chunk without a word (a separator line, a list marker cut from its item) would rank on its heading
        # path alone and show the model and the user nothing.
        chunks = [c for c in with_pages(self.splitter.split(doc), doc) if has_words(c.text)]
        limit = self.ws.settings.max_chunks_per_document
        if len(chunks) > limit:
            raise InvalidInputError(f"{doc.source}: splits into {len(chunks):,} chunks, over the {limit:,} limit "
                                    "(max_chunks_per_document; a larger chunk_size makes fewer)")
        indexed = [c for c in chunks if c.metadata.get("role") != "parent"]
        vectors = self._embed([c.index_text for c in indexed], doc.source)
        tokenizer = self.ws.tokenizer_for(self.kb)
        chunk_tokens = self._tokens(chunks, tokenizer)
        with self.ws.write_lock():
            self._check_carry_on()
            unchanged = self._unchanged(label, doc)
            if unchanged is not None:
                return unchanged
            if not self.replace:
                check_no_collision(self.ws, self.kb, [(doc.source, doc.id)])
            current = self.ws.tokenizer_for(self.ws.catalog.get_kb(self.kb.id))
            if current.version != tokenizer.version:  # the glossary changed while this file was embedded
                chunk_tokens = self._tokens(chunks, current)
            return self._store(label, doc, chunks, indexed, vectors, chunk_tokens)

    @staticmethod
    def _tokens(chunks: list[Chunk], tokenizer: Callable[[str], list[str]]) -> list[list[str] | None]:
        """BM25 tokens per chunk; None for a parent section (kept for context, never indexed)."""
        return [None if c.metadata.get("role") == "parent" else tokenizer(c.index_text) for c in chunks]

    def _store(self, label: str, doc: Document, chunks: list[Chunk], indexed: list[Chunk], vectors: np.ndarray,
               chunk_tokens: list[list[str] | None]) -> FileResult:
        """Pending rows, then vectors, then ready, then the older version out: a crash at any point leaves at
        most a pending document, which the next run purges. The caller holds the write lock."""
        catalog, kb_id = self.ws.catalog, self.kb.id
        if catalog.find_kb(kb_id) is None:
            raise RagError(f"knowledge base '{self.kb.name}' was deleted during the ingest")
        pages = doc.metadata.get("pages")
        catalog.add_pending_document(kb_id, doc.id, doc.source, doc.sha256, chunks, chunk_tokens, len(doc.text),
                                     fmt=doc.metadata.get("format"), pages=pages if isinstance(pages, int) else None,
                                     ocr_pages=len(doc.metadata.get("ocr_pages") or {}) or None)
        self.ws.vectors.upsert(
            self.kb.collection, self.embedder.name, [c.id for c in indexed], vectors,
            [vector_metadata(c) for c in indexed],
        )
        catalog.set_status(kb_id, doc.id, "ready")

        older = [d for d in catalog.documents(kb_id, source=doc.source) if d.id != doc.id]
        for old in older:
            self._remove(old.id)
        return FileResult(label, "replaced" if older else "added", doc.id, doc.source, len(indexed))

    def _embed(self, texts: list[str], source: str) -> np.ndarray:
        batch = self.ws.settings.embed_batch_size or self.embedder.batch_size
        parts = []
        with tqdm(total=len(texts), desc=f"embedding {source[-30:]}", unit="chunk", leave=False,
                  disable=not self.progress or len(texts) <= batch) as bar:
            for start in range(0, len(texts), batch):
                parts.append(self.embedder.embed_documents(texts[start:start + batch]))
                bar.update(len(parts[-1]))
                if self.on_progress is not None:
                    share = min(1.0, (start + batch) / len(texts))
                    self.on_progress(OCR_SHARE + (1 - OCR_SHARE) * share if self._ocr else share)
                self._check_carry_on()
        return np.concatenate(parts) if parts else np.zeros((0, self.embedder.dim), dtype=np.float32)


def check_no_collision(ws: Workspace, kb: KnowledgeBase, files: Iterable[tuple[str, str]]) -> None:
    """DocumentExistsError when a (source, doc id) pair names a source that a different document has."""
    taken = sorted({source for source, doc_id in files
                    if any(d.id != doc_id for d in ws.catalog.documents(kb.id, source=source))})
    if taken:
        raise DocumentExistsError(f"knowledge base '{kb.name}' already has a different document named "
                                  f"{', '.join(repr(t) for t in taken)}; upload with replace=true to replace it")


def _same(doc: Document) -> Document:
    return doc
