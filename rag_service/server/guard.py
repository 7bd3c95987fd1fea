"""The gate every request passes before a route sees it: Host check, API key, body size.

It runs as plain ASGI, ahead of FastAPI's body parsing, so an unauthenticated client gets 401 before a byte of
its body is read (no JSON parsed, no memory spent), and an oversized JSON body is refused by its
Content-Length, or, when streamed without one, as soon as it passes the limit. Upload routes stream their
bodies to disk with their own per-file limit (``uploads``), so only their authentication happens here.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_service.server import problems
from rag_service.server.problems import RequestTooLargeError, UnauthorizedError

PROTECTED_PREFIX = "/v1/"
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def key_matches(keys: Iterable[str], authorization: str | None) -> bool:
    """``Authorization: Bearer <key>`` against every key, each in constant time, so timing reveals neither a
    key nor which one matched."""
    scheme, _, given = (authorization or "").partition(" ")
    token = given.strip().encode() if scheme.lower() == "bearer" else b""
    return bool(sum(hmac.compare_digest(token, key.encode()) for key in keys))


class RequestGuard:
    def __init__(self, app: ASGIApp, *, api_keys: frozenset[str], max_body: int,
                 hosts: frozenset[str] | None, streamed_paths: tuple[str, ...]) -> None:
        self.app = app
        self.api_keys = api_keys
        self.max_body = max_body
        self.hosts = hosts
        self.streamed_suffixes = streamed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        if self.hosts is not None and _host_name(headers.get("host", "")) not in self.hosts:
            await _problem(scope, receive, send, problems.InvalidHostError(
                "this Host header is not served here (RAG_TRUSTED_HOSTS)"))
            return
        if (path.startswith(PROTECTED_PREFIX) and self.api_keys
                and not key_matches(self.api_keys, headers.get("authorization"))):
            await _problem(scope, receive, send, UnauthorizedError(
                "missing or invalid API key: send 'Authorization: Bearer <key>'"))
            return
        if scope["method"] not in _BODY_METHODS or path.endswith(self.streamed_suffixes):
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length")
        too_large = RequestTooLargeError(f"the request body is over the {self.max_body // 1024} KiB limit "
                                         "(RAG_MAX_REQUEST_KB)")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_body:
                await _problem(scope, receive, send, too_large)
                return
            await self.app(scope, receive, send)
            return
        body = await _read_at_most(receive, self.max_body)
        if body is None:
            await _problem(scope, receive, send, too_large)
            return
        await self.app(scope, _replay(body), send)


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    """A body sent without Content-Length (chunked), or None once it passes ``limit``."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(parts)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _problem(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    await problems.response_for(exc)(scope, receive, send)
