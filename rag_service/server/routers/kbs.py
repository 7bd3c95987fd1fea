from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from rag_service.server.deps import AppServices, Caller
from rag_service.server.schemas import CreateKnowledgeBase, KnowledgeBaseDetail, KnowledgeBaseList, KnowledgeBaseOut

router = APIRouter(tags=["knowledge bases"])


@router.post("/kbs", status_code=201, response_model=KnowledgeBaseOut, summary="Create a knowledge base")
def create_kb(body: CreateKnowledgeBase, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.kbs.create(who, **body.model_dump())


@router.get("/kbs", response_model=KnowledgeBaseList, summary="The knowledge bases the caller may read")
def list_kbs(services: AppServices, who: Caller) -> dict[str, Any]:
    return services.kbs.list(who)


@router.get("/kbs/{kb}", response_model=KnowledgeBaseDetail,
            summary="A knowledge base (by name or id) with its document and chunk counts")
def get_kb(kb: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.kbs.get(who, kb)


@router.delete("/kbs/{kb}", status_code=204, summary="Delete a knowledge base: catalog, vectors and BM25 index")
def delete_kb(kb: str, services: AppServices, who: Caller) -> Response:
    services.kbs.delete(who, kb)
    return Response(status_code=204)
