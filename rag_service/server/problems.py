"""Errors of the HTTP layer and the one place where every error becomes an RFC 9457 problem response.

Each ``RagError`` class maps to a status once (``STATUS``); ``code`` is the stable, machine-readable part.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from rag_service import metrics
from rag_service.errors import (
    BusyError,
    ConfigError,
    DocumentExistsError,
    DocumentNotFoundError,
    EmbedderMismatchError,
    ForbiddenError,
    GlossaryEntryNotFoundError,
    GrantNotFoundError,
    InvalidInputError,
    KeyNotFoundError,
    KnowledgeBaseExistsError,
    KnowledgeBaseNotFoundError,
    LLMError,
    ModelError,
    RagError,
    RateLimitedError,
    StoreError,
    UserExistsError,
    UserNotFoundError,
)

log = logging.getLogger("rag_service.server")
PROBLEM_JSON = "application/problem+json"


class NotFoundError(RagError):
    """Something named in the URL does not exist (knowledge bases have their own class in the core)."""

    code = "not_found"


class JobNotFoundError(NotFoundError):
    code = "job_not_found"


class SessionNotFoundError(NotFoundError):
    code = "session_not_found"


class UnauthorizedError(RagError):
    code = "unauthorized"


class PayloadTooLargeError(InvalidInputError):
    code = "file_too_large"


class RequestTooLargeError(PayloadTooLargeError):
    code = "request_too_large"


class InvalidHostError(InvalidInputError):
    """A Host header outside RAG_TRUSTED_HOSTS (DNS rebinding, a misrouted proxy)."""

    code = "invalid_host"


class CrossSiteError(RagError):
    """A browser request to /v1 made by a page of another site (Sec-Fetch-Site / Origin): refused, since an open
    local server must not take uploads or questions from whatever page its user visits."""

    code = "cross_site_request"


class RequestTimeoutError(InvalidInputError):
    """A request body that stalled or crawled (RAG_UPLOAD_IDLE_S, RAG_UPLOAD_MIN_KBPS)."""

    code = "request_timeout"


STATUS: dict[type[RagError], int] = {
    UnauthorizedError: 401,
    CrossSiteError: 403,
    ForbiddenError: 403,
    NotFoundError: 404,
    UserNotFoundError: 404,
    KeyNotFoundError: 404,
    GrantNotFoundError: 404,
    UserExistsError: 409,
    KnowledgeBaseNotFoundError: 404,
    DocumentNotFoundError: 404,
    GlossaryEntryNotFoundError: 404,
    DocumentExistsError: 409,
    KnowledgeBaseExistsError: 409,
    EmbedderMismatchError: 409,
    RequestTimeoutError: 408,
    PayloadTooLargeError: 413,
    InvalidInputError: 400,
    LLMError: 502,
    RateLimitedError: 429,
    BusyError: 503,
    ModelError: 503,
    StoreError: 503,
    ConfigError: 500,
}
_SERVER_SIDE = {
    "llm_error": "the language model failed", "store_error": "a store is unavailable",
    "model_unavailable": "a model is unavailable", "model_package_missing": "a model package is missing",
    "model_hash_mismatch": "a model file failed its checksum", "config_error": "the server is misconfigured",
}
_HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "file_too_large"}


def status_of(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def problem_body(exc: BaseException) -> dict[str, Any]:
    """The problem document for any exception; unexpected ones are logged and never leak internals."""
    metrics.count_store_error(exc)  # a database's or the vector store's failure (rag_store_errors_total)
    if isinstance(exc, RagError):
        status, code, detail = status_of(exc), exc.code, str(exc)
        if status >= 500 and not isinstance(exc, BusyError):  # busy is routine back-pressure
            # The message names internal URLs, paths or a backend's reply: the log has it, the client a summary.
            log.warning("%s: %s", code, detail)
            detail = f"{HTTPStatus(status).phrase.lower()}: {_SERVER_SIDE.get(code, 'a server-side failure')}; " \
                "see the server log"
    else:
        log.error("unexpected error", exc_info=exc)
        status, code, detail = 500, "internal_error", "internal error; see the server log"
    return _body(status, code, detail)


# Routes OpenAI clients call. Their SDKs take an error's text from an "error" object ({"message", "type", "code"})
# and, without one, say only "Error code: 404": these routes' problems carry it beside the RFC 9457 members.
OPENAI_PATHS = ("/v1/chat/completions", "/v1/models", "/v1/embeddings")


def openai_error(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem as the "error" object of OpenAI's API (also the error chunk of a streamed completion)."""
    return {"message": problem["detail"], "type": problem["code"], "code": problem["code"]}


def _for_path(body: dict[str, Any], path: str | None) -> dict[str, Any]:
    if path is not None and any(path == p or path.startswith(f"{p}/") for p in OPENAI_PATHS):
        return {**body, "error": openai_error(body)}
    return body


def _body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "code": code,
            "detail": detail, **extra}


def _headers(exc: Exception) -> dict[str, str]:
    if isinstance(exc, UnauthorizedError):
        return {"WWW-Authenticate": 'Bearer realm="rag-service"'}
    if isinstance(exc, BusyError):
        return {"Retry-After": str(exc.retry_after)}
    return {}


def _response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], headers=headers, media_type=PROBLEM_JSON)


def response_for(exc: Exception, path: str | None = None) -> JSONResponse:
    """The problem response of any exception (also for code that runs before FastAPI's handlers) to a request
    for ``path``."""
    return _response(_for_path(problem_body(exc), path), _headers(exc))


def install(app: FastAPI) -> None:
    """Route every error through problem+json: ours, request validation, routing (404/405) and the rest."""

    async def rag_error(request: Request, exc: Exception) -> JSONResponse:
        return response_for(exc, request.url.path)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return _response(_for_path(_body(422, "validation_error", detail, errors=errors), request.url.path))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _response(_for_path(_body(exc.status_code, code, str(exc.detail)), request.url.path),
                         dict(exc.headers or {}))

    async def client_gone(request: Request, exc: Exception) -> JSONResponse:
        # The client left while its body was being read: nobody reads this answer, and it is no server error.
        return _response(_body(400, "client_disconnected", "the client went away before the request was read"))

    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(RagError, rag_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, rag_error)
