"""The API key scheme as OpenAPI shows it. The check itself runs in ``guard`` before the body is read; this
dependency only declares the Bearer scheme on every /v1 route so clients and /docs know to send it."""

from __future__ import annotations

from fastapi.security import HTTPBearer

bearer_scheme = HTTPBearer(auto_error=False, description="an API key from RAG_API_KEY or RAG_API_KEYS_FILE")
