"""The FastAPI application: routers under /v1 behind the API key, errors as problem+json, services
started and stopped with the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from rag_service import __version__
from rag_service.server import problems
from rag_service.server.auth import require_api_key
from rag_service.server.config import ServerSettings, load_server_settings
from rag_service.server.deps import Services
from rag_service.server.routers import chat, documents, health, kbs, openai, search
from rag_service.settings import Settings


def create_app(settings: Settings, server: ServerSettings | None = None) -> FastAPI:
    services = Services.build(settings, server or load_server_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.start()
        try:
            yield
        finally:
            services.stop()

    app = FastAPI(title="rag-service", version=__version__, lifespan=lifespan,
                  description="Chat with your documents: knowledge bases, uploads, hybrid search, cited answers.")
    app.state.services = services
    problems.install(app)
    app.include_router(health.router)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
    for module in (kbs, documents, search, chat, openai):
        v1.include_router(module.router)
    app.include_router(v1)
    return app


def serve(host: str, port: int) -> None:
    """``rag serve``: one process (the in-process LLM and the ingest worker live here), embedded Chroma
    unless RAG_CHROMA_URL, in-process llama.cpp unless RAG_LLM_BASE_URL."""
    import uvicorn

    from rag_service.models import force_offline
    from rag_service.settings import load_settings

    force_offline()
    uvicorn.run(create_app(load_settings()), host=host, port=port, timeout_graceful_shutdown=10)
