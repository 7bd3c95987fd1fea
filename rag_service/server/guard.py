"""The gate every request passes before a route sees it: Host check, browser origin, API key (who is calling, and
whether their key is within its request rate), body size.

It runs as plain ASGI, ahead of FastAPI's body parsing, so an unauthenticated client gets 401 before a byte of
its body is read (no JSON parsed, no memory spent), and an oversized JSON body is refused by its
Content-Length, or, when streamed without one, as soon as it passes the limit. Upload routes stream their
bodies to disk with their own per-file limit (``uploads``), so only their authentication happens here.

A browser request to ``/v1`` from another site is refused (403): a page elsewhere must not use an open local
server, and a multipart upload is a "simple" request a page may send without a CORS preflight. Browsers say where
a request comes from (``Sec-Fetch-Site``, else ``Origin``); clients that are not browsers send neither and pass.

An answer given before the request body is read (401, 413, 403, a refused upload) is sent at once, and then the
connection lingers, reading and discarding a bounded amount of the body, before it closes: closing a socket with
unread data resets it, and a client that sends its whole body before reading (Python's urllib, many SDKs) would
see the reset instead of the answer.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag_service.server import problems
from rag_service.server.auth import Authenticator
from rag_service.server.limits import KeyLimits
from rag_service.server.problems import CrossSiteError, RequestTooLargeError

PROTECTED_PREFIX = "/v1/"
_BODY_METHODS = {"POST", "PUT", "PATCH"}
# Sec-Fetch-Site values of requests a page on this origin, or the user (address bar, bookmark), made.
_OWN_SITE = {"same-origin", "none"}
# Lingering after an early answer: as nginx's lingering_time / lingering_timeout, bounded in bytes as well, so a
# client that keeps sending cannot hold the connection (or spend our bandwidth) for long.
LINGER_S = 5.0
LINGER_IDLE_S = 1.0
LINGER_BYTES = 64 * 1024 * 1024


class RequestGuard:
    def __init__(self, app: ASGIApp, *, auth: Authenticator, limits: KeyLimits, max_body: int,
                 hosts: frozenset[str] | None, streamed_paths: tuple[str, ...]) -> None:
        self.app = app
        self.auth = auth
        self.limits = limits
        self.max_body = max_body
        self.hosts = hosts
        self.streamed_suffixes = streamed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        receive, send = _lingering(headers, receive, send)
        if self.hosts is not None and _host_name(headers.get("host", "")) not in self.hosts:
            await _problem(scope, receive, send, problems.InvalidHostError(
                "this Host header is not served here (RAG_TRUSTED_HOSTS)"))
            return
        if path.startswith(PROTECTED_PREFIX) and cross_site(headers):
            await _problem(scope, receive, send, CrossSiteError(
                "cross-site browser requests are refused: the API answers its own console and non-browser clients"))
            return
        if path.startswith(PROTECTED_PREFIX):
            try:  # the caller (401 without a valid key), then their key's request budget (429)
                principal = await run_in_threadpool(self.auth.authenticate, headers.get("authorization"))
                self.limits.request(principal)
            except Exception as exc:
                await _problem(scope, receive, send, exc)
                return
            scope.setdefault("state", {})["principal"] = principal  # routes read it as request.state.principal
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


def cross_site(headers: Headers) -> bool:
    """Whether a browser sent this request on behalf of a page from another origin. ``Sec-Fetch-Site`` (every
    current browser) decides when present, and ``same-site`` counts as foreign: another port on 127.0.0.1 is the
    same site. Without it, an ``Origin`` must name the host the request was sent to (``Host``, or the
    ``X-Forwarded-Host`` of a proxy: a page cannot set that header without a CORS preflight)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.strip().lower() not in _OWN_SITE
    origin = headers.get("origin")
    if origin is None:
        return False
    netloc = urlsplit(origin.strip().lower()).netloc
    if not netloc:  # "null": a sandboxed frame, a file: page, a redirect across origins
        return True
    own = {_default_port(h.strip().lower(), origin) for h in
           (headers.get("host", ""), *headers.get("x-forwarded-host", "").split(",")) if h.strip()}
    return _default_port(netloc, origin) not in own


def _default_port(netloc: str, origin: str) -> str:
    """``host`` and ``host:80`` are one origin for http (``:443`` for https)."""
    default = ":443" if origin.startswith("https:") else ":80"
    return netloc.removesuffix(default)


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


def _lingering(headers: Headers, receive: Receive, send: Send) -> tuple[Receive, Send]:
    """``receive`` and ``send`` that notice an answer completed while the request body was still coming: its
    last message is held back until the rest of the body was read and dropped (within the LINGER bounds), so
    the client reads the answer instead of a reset. A request that declares no body passes untouched."""
    declared = headers.get("content-length", "0")
    if declared in ("", "0") and "transfer-encoding" not in headers:
        return receive, send
    body_done = False

    async def tracking_receive() -> Message:
        nonlocal body_done
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            body_done = True
        return message

    async def lingering_send(message: Message) -> None:
        if message["type"] != "http.response.body" or message.get("more_body", False) or body_done:
            await send(message)
            return
        await send({**message, "more_body": True})  # the whole answer: the client has it now
        await _drain(tracking_receive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return tracking_receive, lingering_send


async def _drain(receive: Receive) -> None:
    """Read and drop what is left of a request body, until it ends or a LINGER bound is reached."""
    deadline = time.monotonic() + LINGER_S
    dropped = 0
    while dropped < LINGER_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), timeout=min(left, LINGER_IDLE_S))
        except TimeoutError:
            return
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


async def _problem(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    await problems.response_for(exc, scope["path"])(scope, receive, send)
