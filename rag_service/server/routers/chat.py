from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from rag_service.records import Answer
from rag_service.server.deps import AppServices, Caller
from rag_service.server.disconnect import json_unless_disconnected
from rag_service.server.problems import problem_body
from rag_service.server.schemas import AnswerOut, ChatRequest, RenameSession, SessionList, SessionOut
from rag_service.server.services.chat import ChatTurn, Event
from rag_service.server.sse import event_stream, sse, wants_stream

router = APIRouter(tags=["chat"])


@router.post("/kbs/{kb}/chat", summary="A cited, checked answer; Server-Sent Events with stream=true or "
             "Accept: text/event-stream (token events carry the model's unchecked draft, then one done event with "
             "the checked answer: show done.answer in place of the draft; done.refused=true means withdraw the "
             "draft and show the refusal with done.related; with RAG_STREAM_DRAFTS=false no token events are "
             "sent under a checking policy, only keep-alive comments)",
             responses={200: {"model": AnswerOut, "description": "the checked answer (JSON), or an event stream"}})
async def chat(kb: str, body: ChatRequest, request: Request, services: AppServices, who: Caller) -> Response:
    target = await run_in_threadpool(services.chat.resolve, who, kb, body.session_id)
    turn = ChatTurn(target, body.question, body.k, body.session_id, caller=who)

    def shape(answer: Answer) -> dict[str, Any]:
        return answer.to_json(with_trace=body.explain)

    if not wants_stream(body.stream, request):
        return await json_unless_disconnected(request, services.chat.ask(turn), shape)
    return event_stream(_events(await services.chat.open(turn), shape, drafts=services.chat.streams_drafts))


async def _events(events: AsyncIterator[Event], shape: Callable[[Answer], dict[str, Any]], *,
                  drafts: bool) -> AsyncIterator[str]:
    """``token`` events carry the model's draft as it is written; the ``done`` event's answer (claims checked
    under the grounding policy) replaces it, and with ``refused`` true the draft is withdrawn. Without
    ``drafts`` each piece becomes an SSE comment instead (proxies see traffic, clients see nothing unchecked).
    A failure after the stream began arrives as an ``error`` event with a problem body."""
    try:
        async for item in events:
            if isinstance(item, Answer):
                yield sse(shape(item), "done")
            else:
                yield sse({"text": item}, "token") if drafts else ": checking\n\n"
    except Exception as exc:
        yield sse(problem_body(exc), "error")


@router.get("/sessions", tags=["sessions"], response_model=SessionList,
            summary="The caller's chat sessions in a knowledge base (an admin's: everyone's), most recently "
            "active first")
def list_sessions(kb: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.chat.sessions(who, kb)


@router.patch("/sessions/{session_id}", tags=["sessions"], response_model=SessionOut, summary="Rename a chat session")
def rename_session(session_id: str, body: RenameSession, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.chat.rename_session(who, session_id, body.title)


@router.get("/sessions/{session_id}", tags=["sessions"], response_model=SessionOut,
            summary="A chat session and its messages")
def get_session(session_id: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.chat.session(who, session_id)


@router.delete("/sessions/{session_id}", status_code=204, tags=["sessions"], summary="Delete a chat session")
def delete_session(session_id: str, services: AppServices, who: Caller) -> Response:
    services.chat.delete_session(who, session_id)
    return Response(status_code=204)
