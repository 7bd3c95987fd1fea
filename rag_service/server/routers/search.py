from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from rag_service.server.deps import AppServices
from rag_service.server.schemas import SearchRequest

router = APIRouter(tags=["search"])


@router.post("/kbs/{kb}/search", summary="Hybrid search; the same JSON as `rag search --json`")
def search(kb: str, body: SearchRequest, services: AppServices) -> dict[str, Any]:
    return services.search.search(kb, **body.model_dump())
