"""The web console and the API docs, served by the API's own app with every asset local.

The console is plain HTML, CSS and JavaScript modules under this folder: no build step, no Node toolchain, no CDN.
``/docs`` is Swagger UI from the pinned ``fastapi-offline`` package's copy of its assets (Swagger UI 5, which
renders OpenAPI 3.1), so it works on a machine without internet.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WEB = Path(__file__).parent
SWAGGER = Path(fastapi_offline.__file__).parent / "static"

# What the console's pages may load: only its own files. Inline styles and data: images are for the evaluation
# reports, shown in a sandboxed srcdoc frame (which inherits this policy) as self-contained HTML with inline CSS
# and base64 PNG charts; no script runs in that frame. No page may be framed (clickjacking).
CONSOLE_CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# Swagger UI starts from an inline script in the page FastAPI writes.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def install(app: FastAPI) -> None:
    app.mount("/ui", StaticFiles(directory=WEB / "static"), name="console")
    app.mount("/static/swagger", StaticFiles(directory=SWAGGER), name="swagger")

    @app.get("/", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(WEB / "static" / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="rag-service API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon.png")


class SecurityHeaders:
    """``nosniff`` on every response, so nothing served (a report, an error body) is ever sniffed into HTML;
    the pages also get their Content-Security-Policy, ``X-Frame-Options: DENY`` and no Referer leaving them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(b"x-content-type-options", b"nosniff")]
        policy = page_policy(scope["path"])
        if policy is not None:
            extra += [(b"content-security-policy", policy.encode()), (b"x-frame-options", b"DENY"),
                      (b"referrer-policy", b"no-referrer")]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def page_policy(path: str) -> str | None:
    """The Content-Security-Policy of a page the browser renders (None for the API)."""
    if path == "/" or path.startswith("/ui/"):
        return CONSOLE_CSP
    if path == "/docs" or path.startswith("/static/swagger/"):
        return DOCS_CSP
    return None
