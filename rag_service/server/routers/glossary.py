from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from rag_service.server.deps import AppServices, Caller
from rag_service.server.schemas import GlossaryAdd, GlossaryList, GlossarySuggestions

router = APIRouter(tags=["glossary"])


@router.get("/kbs/{kb}/glossary", response_model=GlossaryList, summary="A knowledge base's domain glossary")
def list_glossary(kb: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.glossary.list_entries(who, kb)


@router.post("/kbs/{kb}/glossary", response_model=GlossaryList,
             summary="Add entries ('SFT = 有监督微调 = supervised fine-tuning' or a list of terms); an entry sharing a "
             "term with an existing one is merged into it. Returns the whole glossary.")
def add_glossary(kb: str, body: GlossaryAdd, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.glossary.add(who, kb, body.entries)


@router.delete("/kbs/{kb}/glossary/{entry_id}", status_code=204, summary="Remove a glossary entry")
def remove_glossary(kb: str, entry_id: str, services: AppServices, who: Caller) -> Response:
    services.glossary.remove(who, kb, entry_id)
    return Response(status_code=204)


@router.get("/kbs/{kb}/glossary/suggestions", response_model=GlossarySuggestions,
            summary="Abbreviation-expansion pairs the KB's documents write out, such as 有监督微调(SFT), that the "
            "glossary lacks: for a person to accept")
def glossary_suggestions(kb: str, services: AppServices, who: Caller,
                         limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    return services.glossary.suggestions(who, kb, limit)
