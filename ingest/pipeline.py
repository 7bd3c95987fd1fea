"""load → clean → split → embed → store, one file at a time, safe to kill at any point.

Order of writes per document: catalog rows as ``pending`` (one transaction), vectors into Chroma,
then ``ready``. Only ready documents are searchable; pending leftovers of a killed run are purged at
the next start. A changed file replaces the old version only after the new one is ready.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ingest.loaders import load, read_bytes
from ingest.splitters import make_splitter
from rag_service.catalog import KnowledgeBase
from rag_service.errors import InvalidInputError, RagError
from rag_service.tokenize import tokenize
from rag_service.workspace import Workspace

MAX_FILE_BYTES = 50 * 1024 * 1024


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


def discover(paths: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """(file, source name): a named file keeps its base name; a directory's files keep their path
    relative to the directory's parent. Hidden files and directories are skipped."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        file = Path(root) / name
                        yield file, file.relative_to(path.parent).as_posix()
        else:
            yield path, path.name


class Ingestor:
    def __init__(self, workspace: Workspace, kb: KnowledgeBase, *, progress: bool = False) -> None:
        self.ws = workspace
        self.kb = kb
        self.embedder = workspace.embedder_for(kb)
        self.splitter = make_splitter(kb.splitter, kb.chunk_size, kb.chunk_overlap)
        self.progress = progress

    def recover(self) -> int:
        """Purge documents a killed run left pending; returns how many."""
        pending = self.ws.catalog.documents(self.kb.id, status="pending")
        for doc in pending:
            self.remove(doc.id)
        return len(pending)

    def remove(self, doc_id: str) -> None:
        """Hide the document first, then drop its vectors, then its rows: a crash in between leaves
        a pending document that the next run purges."""
        self.ws.catalog.set_status(self.kb.id, doc_id, "pending")
        self.ws.vectors.delete(self.kb.collection, self.ws.catalog.chunk_ids(self.kb.id, doc_id))
        self.ws.catalog.delete_document(self.kb.id, doc_id)

    def run(self, paths: Iterable[Path]) -> list[FileResult]:
        self.recover()
        results = []
        for file, source in discover(paths):
            try:
                results.append(self.ingest_file(file, source))
            except RagError as exc:
                results.append(FileResult(path=str(file), status="failed", source=source, error=str(exc)))
        return results

    def ingest_file(self, path: Path, source: str) -> FileResult:
        if not path.exists():
            raise InvalidInputError(f"{path}: no such file or directory")
        raw = read_bytes(path, MAX_FILE_BYTES)
        doc = load(path, source, raw)
        catalog, kb_id = self.ws.catalog, self.kb.id
        existing = catalog.get_document(kb_id, doc.id)
        if existing is not None and existing.status == "ready":
            return FileResult(str(path), "unchanged", doc.id, existing.source, existing.chunks)

        chunks = self.splitter.split(doc)
        texts = [c.text for c in chunks]
        vectors = self._embed(texts, source)
        catalog.add_pending_document(kb_id, doc.id, doc.source, doc.sha256, chunks, [tokenize(t) for t in texts])
        self.ws.vectors.upsert(
            self.kb.collection, self.embedder.name, [c.id for c in chunks], vectors,
            [{"doc_id": c.doc_id, "source": c.source, "position": c.position} for c in chunks],
        )
        catalog.set_status(kb_id, doc.id, "ready")

        older = [d for d in catalog.documents(kb_id, source=doc.source) if d.id != doc.id]
        for old in older:
            self.remove(old.id)
        return FileResult(str(path), "replaced" if older else "added", doc.id, doc.source, len(chunks))

    def _embed(self, texts: list[str], source: str) -> np.ndarray:
        batch = self.ws.settings.embed_batch_size
        parts = []
        with tqdm(total=len(texts), desc=f"embedding {source}", unit="chunk", disable=not self.progress,
                  leave=False) as bar:
            for start in range(0, len(texts), batch):
                parts.append(self.embedder.embed_documents(texts[start:start + batch]))
                bar.update(len(parts[-1]))
        return np.concatenate(parts) if parts else np.zeros((0, self.embedder.dim), dtype=np.float32)
