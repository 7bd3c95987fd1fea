"""Server-Sent Events framing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

EVENT_STREAM = "text/event-stream"


def sse(data: Any, event: str | None = None) -> str:
    """One event; ``data`` is JSON unless it is already a string (OpenAI's ``[DONE]``)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    lines = [f"event: {event}"] if event else []
    lines += [f"data: {line}" for line in payload.split("\n")]
    return "\n".join(lines) + "\n\n"


def wants_stream(requested: bool, request: Request) -> bool:
    return requested or EVENT_STREAM in request.headers.get("accept", "")


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    # no-cache and X-Accel-Buffering: proxies (nginx) must pass tokens on as they come.
    return StreamingResponse(events, media_type=EVENT_STREAM,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
