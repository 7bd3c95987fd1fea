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

WEB = Path(__file__).parent
SWAGGER = Path(fastapi_offline.__file__).parent / "static"


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
