"""Logs of `rag serve` and `rag worker`: one line per HTTP request, and the lines of jobs and libraries, as text for a
terminal (default) or as one JSON object per line for a log pipeline (RAG_LOG_FORMAT=json).

Every HTTP request gets a request id: the client's ``X-Request-ID`` when it is a sane token (at most 128 characters
of letters, digits and ``._:/+=@-``), else a new one; it is echoed in the ``X-Request-ID`` header of every response,
also of the guard's early answers (401, 403, 413, 429). When the response has been sent, ``RequestLog`` writes the
request's line (logger ``rag_service.http``): request id, method, route template (``/v1/kbs/{kb}/chat``, never the
raw path), the ``kb`` path parameter, status, latency, the caller's name (never a key) and what the request's code
noted (``note``: a chat's time to first token, tokens and refusal). It also counts the request in the HTTP metrics.

What is never logged: document text, questions, answers, keys. Fields are passed explicitly (``fields(...)``) so
that nothing reaches a line by accident.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_service import metrics
from rag_service.admin.access import Principal
from rag_service.server import problems
from rag_service.settings import LogFormat

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
UNMATCHED = "unmatched"  # the route label of a path no route serves (404s)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
http_log = logging.getLogger("rag_service.http")
# Third-party loggers that are chatty at INFO: one line per outgoing HTTP request (the Chroma server, an LLM server).
QUIET = ("httpx", "httpcore", "chromadb", "urllib3")
_FIELDS = "fields"


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: these values become the line's fields (JSON members, or ``key=value`` in text)."""
    return {_FIELDS: values}


# -- formatters ------------------------------------------------------------------------------------------
def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    values = getattr(record, _FIELDS, None)
    return {k: v for k, v in values.items() if v is not None} if isinstance(values, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ms), ``level``, ``logger``, ``message``, the record's fields and,
    for an exception, ``error`` (its type and text) and ``traceback``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _time(record), "level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        for key, value in _fields_of(record).items():
            out.setdefault(key, value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={_text_value(v)}" for k, v in _fields_of(record).items())
        if not extra:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the line
        return f"{head} {extra}{newline}{rest}"


def _text_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_text_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if not text or any(c.isspace() or c == '"' for c in text) else text


def configure(log_format: LogFormat, level: int = logging.INFO) -> None:
    """The process's logging: one handler on stderr with the chosen format; uvicorn's loggers write through it
    (run uvicorn with ``log_config=None, access_log=False``: ``RequestLog`` writes the request lines)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)


class RequestIdFilter(logging.Filter):
    """Any line written while a request is handled (in its task, or a thread it handed work to with its context: a
    store's failure, an LLM error) names the request, so it can be found beside the request's own line."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = _current.get()
        if request is not None:
            values = getattr(record, _FIELDS, None)
            values = values if isinstance(values, dict) else {}
            if "request_id" not in values:
                setattr(record, _FIELDS, {"request_id": request.request_id, **values})
        return True


# -- the request in hand -----------------------------------------------------------------------------------
@dataclass
class RequestRecord:
    """What a request's code adds to its log line (``note``), read when the response has been sent."""

    request_id: str
    noted: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, **values: Any) -> None:
        """Safe from any thread (a chat's worker thread notes its numbers)."""
        with self._lock:
            self.noted.update(values)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.noted)


_current: ContextVar[RequestRecord | None] = ContextVar("rag_request", default=None)


def current() -> RequestRecord | None:
    """The record of the HTTP request this code runs for (None outside one: the CLI, a worker)."""
    return _current.get()


def request_id_of(headers: Headers) -> str:
    given = headers.get(REQUEST_ID_HEADER.lower(), "").strip()
    return given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex


# -- route templates -----------------------------------------------------------------------------------------
class RouteTemplates:
    """The route template a path belongs to, and its path parameters, from the app's own routes: the OpenAPI paths
    (full, with router prefixes) and the app's top-level routes and mounts. Matched by the middleware itself, so a
    request the guard answered before any route ran (401 on a chat) is still counted under its route."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._table: list[tuple[re.Pattern[str], str]] | None = None

    def _build(self) -> list[tuple[re.Pattern[str], str]]:
        templates = set(self._app.openapi().get("paths", {}))
        for route in self._app.routes:
            path = getattr(route, "path", None)
            if not isinstance(path, str) or not path:
                continue
            if type(route).__name__ == "Mount":
                templates.add(f"{path.rstrip('/')}/{{path:path}}")
            else:
                templates.add(path)
        # Literal segments before parameters: /v1/users/me before /v1/users/{user}.
        ordered = sorted(templates, key=lambda t: (t.count("{"), -len(t), t))
        return [(compile_path(t)[0], t.replace(":path}", "}")) for t in ordered]

    def match(self, path: str) -> tuple[str, dict[str, str]]:
        table = self._table
        if table is None:
            table = self._table = self._build()
        for regex, template in table:
            found = regex.match(path)
            if found:
                return template, found.groupdict()
        return UNMATCHED, {}


# -- the middleware ------------------------------------------------------------------------------------------
class RequestLog:
    """Around everything but the security headers: gives each request its id (echoed in every response), then logs
    and counts it once its response has been sent (or has failed)."""

    def __init__(self, app: ASGIApp, *, routes: RouteTemplates) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        record = RequestRecord(request_id_of(Headers(scope=scope)))
        token = _current.set(record)
        status, started_response = 500, False  # 500 unless a response starts
        header = (REQUEST_ID_HEADER.lower().encode(), record.request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = int(message["status"]), True
                kept = [h for h in message.get("headers", []) if h[0].lower() != header[0]]
                message = {**message, "headers": [*kept, header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started_response:  # nothing more can be said: the server closes the connection
                raise
            # An unexpected error: answered here rather than by Starlette's outer error middleware, so the 500
            # carries the request id too (problem_body logs the traceback; the request's line says 500).
            await problems.response_for(exc, scope.get("path"))(scope, receive, send_with_id)
        finally:
            _current.reset(token)
            self._done(scope, record, status, time.perf_counter() - started)

    def _done(self, scope: Scope, record: RequestRecord, status: int, seconds: float) -> None:
        method = str(scope.get("method", ""))
        route, params = self.routes.match(str(scope.get("path", "")))
        label = method if method in _METHODS else "other"  # a client may send any token as a method
        metrics.HTTP_REQUESTS.labels(label, route, str(status)).inc()
        metrics.HTTP_DURATION.labels(label, route).observe(seconds)
        principal = scope.get("state", {}).get("principal")
        client = scope.get("client")
        latency_ms = round(seconds * 1000, 1)
        values: dict[str, Any] = {
            "request_id": record.request_id, "method": method, "route": route, "kb": params.get("kb"),
            "status": status, "latency_ms": latency_ms,
            "user": principal.name if isinstance(principal, Principal) else None,
            "client": client[0] if client else None, **record.snapshot()}
        level = logging.WARNING if status >= 500 else logging.INFO
        http_log.log(level, "%s %s %d %.0f ms", method, route, status, latency_ms, extra=fields(**values))
