"""The stores of one data dir, opened lazily and shared by ingestion, retrieval and generation."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag_service.errors import ConfigError, EmbedderMismatchError
from rag_service.index.glossary import GlossaryTokenizer, tokenizer_for
from rag_service.models.embeddings import BUNDLED_EMBEDDERS, Embedder, get_embedder
from rag_service.settings import Settings
from rag_service.storage.catalog import Catalog, KnowledgeBase
from rag_service.storage.db import Backend, open_backend
from rag_service.storage.feedback import FeedbackStore
from rag_service.storage.jobs import JobStore
from rag_service.storage.people import PeopleStore
from rag_service.storage.sessions import SessionStore
from rag_service.storage.vector_backends import open_vector_index
from rag_service.storage.vectorstore import VectorIndex
from rag_service.text.tokenize import Tokenizer, get_tokenizer


def canonical_embedder(name: str) -> str:
    """'e5' and 'minilm' stay as they are; a model path becomes absolute so it compares reliably."""
    return name if name in BUNDLED_EMBEDDERS else str(Path(name).expanduser().resolve())


class Workspace:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @functools.cached_property
    def backend(self) -> Backend:
        """The database engine of the catalog, sessions, feedback and jobs (``settings.database_url``)."""
        return open_backend(self.settings)

    @functools.cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.backend.database("catalog"))

    @functools.cached_property
    def vectors(self) -> VectorIndex:
        return open_vector_index(self.settings)

    @functools.cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.backend.database("catalog"))

    @functools.cached_property
    def sessions(self) -> SessionStore:
        return SessionStore(self.backend.database("sessions"))

    @functools.cached_property
    def feedback(self) -> FeedbackStore:
        return FeedbackStore(self.backend.database("sessions"))

    @functools.cached_property
    def people(self) -> PeopleStore:
        """Users, API keys, grants and the audit trail; beside the catalog, whose KBs the grants name."""
        _ = self.catalog  # migrated first: grants refer to its knowledge bases
        return PeopleStore(self.backend.database("catalog"))

    @functools.cached_property
    def tokenizer(self) -> Tokenizer:
        path = self.settings.jieba_user_dict
        if path is not None and not path.is_file():
            raise ConfigError(f"jieba_user_dict {path} is not a file")
        return get_tokenizer(path)

    def tokenizer_for(self, kb: KnowledgeBase) -> GlossaryTokenizer:
        """The tokenizer of ``kb``'s BM25 tokens: the configured one plus the KB's glossary terms."""
        return tokenizer_for(self.tokenizer, kb)

    @contextmanager
    def write_lock(self, timeout: float | None = None) -> Iterator[None]:
        """One writer at a time (ingest, delete, re-tokenise) for everything sharing this catalog, so a writer
        that purges leftovers never touches another writer's work in progress: ``flock`` on the data dir when
        embedded, an advisory lock on PostgreSQL. ``timeout``: seconds to wait before BusyError (None: as long
        as it takes, as the CLI and the ingest worker do)."""
        with self.backend.write_lock(timeout):
            yield

    def remove_document(self, kb: KnowledgeBase, doc_id: str) -> None:
        """Remove one document from every store; the caller holds the write lock. Hidden first, then its vectors,
        then its rows (the change log carries the BM25 removal): a crash in between leaves a pending document that
        the next ingest purges."""
        self.catalog.set_status(kb.id, doc_id, "pending")
        self.vectors.delete(kb.collection, self.catalog.chunk_ids(kb.id, doc_id))
        self.catalog.delete_document(kb.id, doc_id)

    def close(self) -> None:
        if "backend" in self.__dict__:
            self.backend.close()

    def _requested_embedder(self) -> str | None:
        """The embedder the user asked for explicitly (env, file or flag); None when left at default."""
        if "embedder" in self.settings.model_fields_set:
            return canonical_embedder(self.settings.embedder)
        return None

    def create_kb(self, name: str, *, splitter: str, chunk_size: int, chunk_overlap: int) -> KnowledgeBase:
        """A new KB bound to the configured embedder (its name and dimension are recorded)."""
        embedder = get_embedder(canonical_embedder(self.settings.embedder))
        return self.catalog.create_kb(name, embedder=embedder.name, dim=embedder.dim, splitter=splitter,
                                      chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                                      chunk_unit=self.settings.chunk_unit,
                                      options={"tokenizer": self.tokenizer.version})

    def embedder_for(self, kb: KnowledgeBase) -> Embedder:
        """The embedder that built ``kb``; asking for another one is refused, never silently mixed."""
        requested = self._requested_embedder()
        if requested is not None and requested != kb.embedder:
            raise EmbedderMismatchError(
                f"knowledge base '{kb.name}' was built with embedder '{kb.embedder}', but embedder "
                f"'{requested}' is configured; unset RAG_EMBEDDER or ingest into a new knowledge base"
            )
        embedder = get_embedder(kb.embedder)
        if embedder.dim != kb.dim:
            raise EmbedderMismatchError(
                f"knowledge base '{kb.name}' holds {kb.dim}-d vectors but embedder '{kb.embedder}' "
                f"now produces {embedder.dim}-d vectors; re-ingest into a new knowledge base"
            )
        return embedder
