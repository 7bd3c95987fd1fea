"""Our hybrid retriever as a LangChain retriever, to drop into any LCEL chain.

    from rag_service.retrieval.langchain_adapter import RagRetriever

    retriever = RagRetriever(kb="handbook", data_dir="./data", k=4, filter={"source": "handbook/*.md"})
    docs = retriever.invoke("travel allowance")      # list[langchain_core.documents.Document]
    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm

Each hit becomes a ``Document`` whose ``page_content`` is the chunk text (the parent section for
parent-child KBs) and whose metadata holds ``chunk_id``, ``doc_id``, ``source``, ``score`` and, when
the chunk has them, ``page`` and ``headings``. Searches go through ``Retriever.search`` exactly as
``rag search`` does: same tokenizer, filters, fusion and KB-bound embedder.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from rag_service.records import Hit
from rag_service.retrieval.expansion import Expand
from rag_service.retrieval.search import Mode, Retriever
from rag_service.settings import Fusion
from rag_service.storage.catalog import KnowledgeBase
from rag_service.storage.filters import SearchFilter
from rag_service.workspace import Workspace


class RagRetriever(BaseRetriever):
    """A LangChain ``BaseRetriever`` over one knowledge base of a rag-service data dir."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kb: str = Field(description="Knowledge base name or id.")
    data_dir: Path | None = Field(None, description="Data dir; unset means settings (RAG_DATA_DIR, rag.toml, ./data).")
    k: int | None = Field(None, ge=1, description="Hits returned; unset means the KB's or settings' search_k.")
    mode: Mode = "hybrid"
    fusion: Fusion | None = None
    filter: dict[str, Any] | None = Field(
        None, description="doc_id, source (a glob) and chunk metadata fields, as SearchFilter.from_mapping takes.")
    expand: Expand | None = None
    rerank: str | None = None

    _workspace: Workspace | None = PrivateAttr(default=None)
    _owns_workspace: bool = PrivateAttr(default=False)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            SearchFilter.from_mapping(value)  # a bad key or value fails here, not at the first query
        return value

    @classmethod
    def from_workspace(cls, ws: Workspace, kb: str | KnowledgeBase, **kw: Any) -> RagRetriever:
        """A retriever over an already open workspace (in-process use: no second catalog or Chroma client)."""
        retriever = cls(kb=kb.id if isinstance(kb, KnowledgeBase) else kb, data_dir=ws.settings.data_dir, **kw)
        retriever._workspace = ws
        return retriever

    @property
    def workspace(self) -> Workspace:
        """The workspace searched, opened on first use from ``data_dir`` and the usual settings sources."""
        with self._lock:  # batch() runs queries in threads: open the stores once
            if self._workspace is None:
                from rag_service.models.registry import force_offline
                from rag_service.settings import load_settings

                force_offline()
                overrides = {"data_dir": Path(self.data_dir)} if self.data_dir is not None else {}
                self._workspace = Workspace(load_settings(**overrides))
                self._owns_workspace = True
            ws = self._workspace
            _ = ws.catalog, ws.vectors  # cached properties: create them here, under the lock
            return ws

    def close(self) -> None:
        """Close the workspace this retriever opened itself (one given to ``from_workspace`` is left open)."""
        with self._lock:
            if self._workspace is not None and self._owns_workspace:
                self._workspace.close()
                self._workspace = None
                self._owns_workspace = False

    def search_filter(self) -> SearchFilter | None:
        return SearchFilter.from_mapping(self.filter) if self.filter else None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        ws = self.workspace
        retriever = Retriever(ws, ws.catalog.get_kb(self.kb))  # looked up per query: KB options stay current
        hits = retriever.search(query, k=self.k, mode=self.mode, fusion=self.fusion, filter=self.search_filter(),
                                expand=self.expand, rerank=self.rerank)
        return [to_document(h) for h in hits]


def to_document(hit: Hit) -> Document:
    chunk = hit.chunk
    metadata: dict[str, Any] = {"chunk_id": chunk.id, "doc_id": chunk.doc_id, "source": chunk.source,
                                "score": hit.score}
    if chunk.metadata.get("page") is not None:
        metadata["page"] = chunk.metadata["page"]
    if chunk.metadata.get("headings"):
        metadata["headings"] = list(chunk.metadata["headings"])
    return Document(page_content=chunk.text, metadata=metadata, id=chunk.id)
