"""The stores of one data dir, opened lazily and shared by ingestion, retrieval and generation."""

from __future__ import annotations

import fcntl
import functools
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag_service.catalog import Catalog, KnowledgeBase
from rag_service.embeddings import Embedder, get_embedder
from rag_service.errors import BusyError, ConfigError, EmbedderMismatchError
from rag_service.feedback import FeedbackStore
from rag_service.sessions import SessionStore
from rag_service.settings import Settings
from rag_service.tokenize import Tokenizer, get_tokenizer
from rag_service.vectorstore import VectorStore


def canonical_embedder(name: str) -> str:
    """'e5' and 'minilm' stay as they are; a model path becomes absolute so it compares reliably."""
    return name if name in ("e5", "minilm") else str(Path(name).expanduser().resolve())


WRITE_LOCK_POLL_S = 0.05


def _flock_within(fd: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise BusyError(f"another write (an ingest, a delete) holds this data dir; waited {timeout:g} s",
                                retry_after=max(1, math.ceil(timeout))) from None
            time.sleep(WRITE_LOCK_POLL_S)


class Workspace:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @functools.cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.settings.data_dir / "catalog.sqlite3")

    @functools.cached_property
    def vectors(self) -> VectorStore:
        return VectorStore(self.settings.data_dir, self.settings.chroma_url)

    @functools.cached_property
    def sessions(self) -> SessionStore:
        return SessionStore(self.settings.data_dir / "sessions.sqlite3")

    @functools.cached_property
    def feedback(self) -> FeedbackStore:
        return FeedbackStore(self.settings.data_dir / "sessions.sqlite3")

    @functools.cached_property
    def tokenizer(self) -> Tokenizer:
        path = self.settings.jieba_user_dict
        if path is not None and not path.is_file():
            raise ConfigError(f"jieba_user_dict {path} is not a file")
        return get_tokenizer(path)

    @contextmanager
    def write_lock(self, timeout: float | None = None) -> Iterator[None]:
        """One writer per data dir at a time (ingest, delete, re-tokenise), across processes, so a
        writer that purges leftovers never touches another writer's work in progress. ``timeout``: seconds
        to wait before BusyError (None: as long as it takes, as the CLI and the ingest worker do)."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.data_dir / "write.lock", "w") as handle:
            if timeout is None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            else:
                _flock_within(handle.fileno(), timeout)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.close()

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
