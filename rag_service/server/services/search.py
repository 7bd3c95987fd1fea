"""Hybrid search over one knowledge base, answering the same JSON as ``rag search --json``."""

from __future__ import annotations

from typing import Any

from rag_service import metrics
from rag_service.admin.access import Access, Principal
from rag_service.retrieval.search import Mode, Retriever
from rag_service.server.workspaces import Workspaces
from rag_service.settings import Fusion
from rag_service.storage.filters import SearchFilter


class SearchService:
    def __init__(self, workspaces: Workspaces) -> None:
        self.workspaces = workspaces

    def search(self, who: Principal, kb_ref: str, query: str, *, k: int | None = None, mode: Mode = "hybrid",
               fusion: Fusion | None = None, filter: dict[str, Any] | None = None,
               pseudo_feedback: int | None = None, explain: bool = False) -> dict[str, Any]:
        ws = self.workspaces.current()
        result = Retriever(ws, Access(ws).kb(who, kb_ref)).run(
            query, k=k, mode=mode, fusion=fusion, filter=SearchFilter.from_mapping(filter or {}),
            pseudo_feedback=pseudo_feedback, explain=explain)
        metrics.observe_search(mode)
        return result.to_json(explain=explain)
