from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from rag_service import __version__
from rag_service.server.deps import AppServices

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Readiness of the models and stores (no auth)")
def healthz(services: AppServices) -> JSONResponse:
    ready, body = services.readiness.report()
    body.update(version=__version__, chat_queue=services.chat.gate.stats())
    return JSONResponse(body, status_code=200 if ready else 503)
