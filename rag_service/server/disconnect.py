"""Work that stops when its client leaves.

Starlette cancels a streaming response when the client disconnects, but not a plain one: a non-streaming
chat whose client timed out would keep its place in the LLM queue and generate for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

T = TypeVar("T")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a response nobody is waiting for


async def _disconnected(request: Request) -> None:
    # The body was read already, so the next message is the disconnect (or never comes).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None after cancelling it because the client went away."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def json_unless_disconnected(request: Request, work: Awaitable[T], render: Callable[[T], Any]) -> Response:
    """``render(result)`` as JSON, or 499 when the client left first (nobody will read it)."""
    result = await unless_disconnected(request, work)
    return Response(status_code=CLIENT_CLOSED_REQUEST) if result is None else JSONResponse(render(result))
