"""Bearer API keys for every /v1 route, when keys are configured."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag_service.server.deps import AppServices
from rag_service.server.problems import UnauthorizedError

_bearer = HTTPBearer(auto_error=False, description="an API key from RAG_API_KEY or RAG_API_KEYS_FILE")


def require_api_key(services: AppServices,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    if not services.api_keys:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    # Compare against every key, in constant time each, so timing reveals neither key nor match position.
    if not sum(hmac.compare_digest(given, key.encode()) for key in services.api_keys):
        raise UnauthorizedError("missing or invalid API key: send 'Authorization: Bearer <key>'")
