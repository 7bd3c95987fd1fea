"""The FastAPI application: routers under /v1 behind the API key, errors as problem+json, services
started and stopped with the app."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from rag_service import __version__, console
from rag_service.errors import ConfigError
from rag_service.server import metrics, problems
from rag_service.server.auth import bearer_scheme
from rag_service.server.config import allowed_hosts, api_keys
from rag_service.server.deps import Services
from rag_service.server.guard import RequestGuard
from rag_service.server.logs import RequestLog, RouteTemplates
from rag_service.server.routers import chat, documents, feedback, glossary, health, kbs, openai, people, search
from rag_service.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.start()
        app.state.routes.match("/")  # builds the route table now (~0.1 s), not during the first request
        try:
            yield
        finally:
            services.stop()

    app = FastAPI(title="rag-service", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Chat with your documents: knowledge bases, uploads, hybrid search, cited answers.")
    app.state.services = services
    problems.install(app)
    app.include_router(health.router)
    console.install(app)
    app.add_middleware(RequestGuard, auth=services.auth, limits=services.limits,
                       max_body=settings.max_request_kb * 1024,
                       hosts=allowed_hosts(settings, services.auth.keyed()), streamed_paths=("/documents",))
    # Around the guard: every response carries its request id, and every request is logged and counted once.
    app.state.routes = RouteTemplates(app)
    app.add_middleware(RequestLog, routes=app.state.routes)
    # Outermost: every answer gets the security headers, the guard's early ones and RequestLog's 500s included.
    app.add_middleware(console.SecurityHeaders)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(bearer_scheme)])
    for module in (kbs, documents, search, chat, openai, feedback, glossary, people):
        v1.include_router(module.router)
    app.include_router(v1)
    registry = metrics.registry_with(
        metrics.BuildInfo(), metrics.ChatQueueCollector(services.chat.gate.stats, settings.chat_concurrency),
        metrics.JobsCollector(lambda: services.workspaces.current().jobs))
    metrics.install(app, registry, public=settings.metrics_public)
    return app


def serve(host: str, port: int) -> None:
    """``rag serve``: one process (the in-process LLM and the ingest worker live here), embedded Chroma
    unless RAG_CHROMA_URL, in-process llama.cpp unless RAG_LLM_BASE_URL."""
    import uvicorn

    from rag_service.models.registry import force_offline
    from rag_service.server import logs
    from rag_service.settings import load_settings

    force_offline()
    settings = load_settings()
    logs.configure(settings.log_format)
    if not settings.allow_open and not _loopback(host) and not api_keys(settings) and not _user_keys(settings):
        raise ConfigError(f"refusing to listen on {host} without API keys: set RAG_API_KEY (or RAG_API_KEYS_FILE), "
                          "create a user's key (rag keys create), or RAG_ALLOW_OPEN=true for a trusted network")
    sys.setswitchinterval(settings.switch_interval_ms / 1000)  # the event loop's share of the GIL, under load
    # Uvicorn's own lines go through the handler logs.configure set up; RequestLog writes one line per request.
    uvicorn.run(create_app(settings), host=host, port=port, timeout_graceful_shutdown=10, log_config=None,
                access_log=False)


def _user_keys(settings: Settings) -> bool:
    from rag_service.workspace import Workspace

    ws = Workspace(settings)
    try:
        return ws.people.any_key()
    finally:
        ws.close()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
