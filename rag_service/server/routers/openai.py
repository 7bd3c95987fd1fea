"""OpenAI-compatible chat completions over a knowledge base (``model`` = KB id or name), so existing OpenAI
clients and UIs work unchanged. Stateless like OpenAI's API: the client's earlier messages are the history.
Extensions beside the standard fields: ``citations``, ``refused``, ``related`` (the closest passages when
refused) and ``claims`` (each delivered sentence and its verdict).

Streaming: a generic OpenAI client shows every content delta as the answer and cannot take text back, so
unless the grounding policy is ``off`` the content is sent once it has been checked, as one delta after the
model finishes (SSE comments keep the connection alive meanwhile). With ``off`` the model's text streams as
it is written."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from rag_service.records import Answer
from rag_service.server.deps import AppServices, Caller
from rag_service.server.disconnect import json_unless_disconnected
from rag_service.server.problems import openai_error, problem_body
from rag_service.server.schemas import (
    ChatCompletionOut,
    EmbeddingList,
    EmbeddingRequest,
    ModelList,
    ModelOut,
    OpenAIChatRequest,
)
from rag_service.server.services.chat import ChatTurn, Event
from rag_service.server.sse import event_stream, sse

router = APIRouter(tags=["OpenAI-compatible"])


@dataclass(frozen=True, slots=True)
class _Completion:
    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    @staticmethod
    def _extras(answer: Answer) -> dict[str, Any]:
        usage = asdict(answer.usage)
        return {"usage": {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
                "citations": [c.to_json() for c in answer.citations], "refused": answer.refused,
                "related": [h.to_json() for h in answer.related], "claims": [c.to_json() for c in answer.claims]}

    def message(self, answer: Answer) -> dict[str, Any]:
        return {**self._envelope("chat.completion"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                             "finish_reason": "stop"}],
                **self._extras(answer)}

    def _chunk(self, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        return {**self._envelope("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    async def chunks(self, events: AsyncIterator[Event], *, checked: bool) -> AsyncIterator[str]:
        """Role, content deltas, a final chunk with usage and citations, ``[DONE]``. ``checked``: the content
        is the checked answer, sent whole at the end; otherwise the model's text as it is written."""
        yield sse(self._chunk({"role": "assistant", "content": ""}))
        try:
            async for item in events:
                if isinstance(item, Answer):
                    if checked:
                        yield sse(self._chunk({"content": item.answer}))
                    yield sse({**self._chunk({}, "stop"), **self._extras(item)})
                elif checked:
                    yield ": checking\n\n"  # an SSE comment: clients ignore it, proxies see traffic
                else:
                    yield sse(self._chunk({"content": item}))
        except Exception as exc:
            yield sse({"error": openai_error(problem_body(exc))})
        yield sse("[DONE]")


@router.post("/chat/completions", summary="OpenAI-compatible chat completion; model = knowledge base id or name",
             responses={200: {"model": ChatCompletionOut,
                              "description": "a chat.completion (JSON), or chat.completion.chunk events with stream"}})
async def chat_completions(body: OpenAIChatRequest, request: Request, services: AppServices,
                           who: Caller) -> Response:
    question, history = body.turns(services.chat.max_history)
    kb = await run_in_threadpool(services.chat.resolve, who, body.model)
    turn = ChatTurn(kb, question, history=history, caller=who)
    completion = _Completion(body.model)
    if not body.stream:
        return await json_unless_disconnected(request, services.chat.ask(turn), completion.message)
    checked = services.chat.policy != "off"
    return event_stream(completion.chunks(await services.chat.open(turn), checked=checked))


@router.get("/models", response_model=ModelList, summary="The knowledge bases the key may read, as OpenAI models")
def list_models(services: AppServices, who: Caller) -> dict[str, Any]:
    return {"object": "list", "data": services.kbs.models(who)}


@router.get("/models/{model}", response_model=ModelOut, summary="One knowledge base as an OpenAI model")
def get_model(model: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.kbs.model(who, model)


@router.post("/embeddings", response_model=EmbeddingList,
             summary="OpenAI-compatible embeddings: model = a knowledge base (its embedder), or e5, minilm, default")
def embeddings(body: EmbeddingRequest, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.embeddings.embed(who, body.model, body.texts(), input_type=body.input_type,
                                     encoding_format=body.encoding_format, dimensions=body.dimensions)
