from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from rag_service.server.deps import AppServices, Caller
from rag_service.server.schemas import SearchOut, SearchRequest

router = APIRouter(tags=["search"])


# exclude_unset: keys the result leaves out (explain's, a hit's page) stay absent instead of coming back as null.
@router.post("/kbs/{kb}/search", response_model=SearchOut, response_model_exclude_unset=True,
             summary="Hybrid search; the same JSON as `rag search --json`")
def search(kb: str, body: SearchRequest, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.search.search(who, kb, **body.model_dump())
