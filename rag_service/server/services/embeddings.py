"""``POST /v1/embeddings``: texts embedded by a knowledge base's embedder (``model`` = a KB the key may read), or by a
bundled one (``e5``, ``minilm``, or ``default`` for the configured embedder), as OpenAI's embeddings API answers.

One embedding request computes at a time per process (each takes the cores for seconds); the next waits up to
``WAIT_S`` and is then answered 503 + Retry-After, so a burst of them cannot starve chats and searches.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from rag_service.admin.access import Access, Principal
from rag_service.errors import BusyError, InvalidInputError, KnowledgeBaseNotFoundError
from rag_service.models.embeddings import BUNDLED_EMBEDDERS, Embedder, get_embedder
from rag_service.server.workspaces import Workspaces
from rag_service.workspace import canonical_embedder

InputType = Literal["query", "passage"]
EncodingFormat = Literal["float", "base64"]
WAIT_S = 30.0
RETRY_AFTER = 10


class EmbeddingService:
    def __init__(self, workspaces: Workspaces, max_inputs: int, max_tokens: int) -> None:
        self.workspaces = workspaces
        self.max_inputs = max_inputs
        self.max_tokens = max_tokens
        self._computing = threading.Lock()

    def _embedder(self, who: Principal, model: str) -> Embedder:
        """The embedder ``model`` names: a readable KB's (first: a KB may be called 'e5'), a bundled one, or 404."""
        ws = self.workspaces.current()
        try:
            return ws.embedder_for(Access(ws).kb(who, model))
        except KnowledgeBaseNotFoundError:
            if model == "default":
                return get_embedder(canonical_embedder(ws.settings.embedder))
            if model in BUNDLED_EMBEDDERS:
                return get_embedder(model)
            raise

    def embed(self, who: Principal, model: str, texts: Sequence[str], *, input_type: InputType = "query",
              encoding_format: EncodingFormat = "float", dimensions: int | None = None) -> dict[str, Any]:
        if not texts:
            raise InvalidInputError("input is empty: give a text or a list of texts")
        if len(texts) > self.max_inputs:
            raise InvalidInputError(f"{len(texts)} inputs: at most {self.max_inputs} in one request "
                                    "(RAG_MAX_EMBEDDING_INPUTS); send smaller batches")
        if any(not t.strip() for t in texts):
            raise InvalidInputError("every input must be a non-empty text")
        embedder = self._embedder(who, model)
        if dimensions is not None and dimensions != embedder.dim:
            raise InvalidInputError(f"model '{model}' makes {embedder.dim}-dimensional vectors; dimensions "
                                    f"{dimensions} cannot be given")
        tokens = sum(embedder.count_tokens(t) for t in texts)
        if tokens > self.max_tokens:
            raise InvalidInputError(f"{tokens} tokens: at most {self.max_tokens} in one request "
                                    "(RAG_MAX_EMBEDDING_TOKENS); send smaller batches")
        if not self._computing.acquire(timeout=WAIT_S):
            raise BusyError("another embedding request is being computed; retry later", RETRY_AFTER)
        try:
            if input_type == "passage":
                vectors = embedder.embed_documents(list(texts))
            else:
                vectors = np.stack([embedder.embed_query(t) for t in texts])
        finally:
            self._computing.release()
        return {"object": "list", "model": model,
                "data": [{"object": "embedding", "index": i, "embedding": _encoded(v, encoding_format)}
                         for i, v in enumerate(np.asarray(vectors, dtype=np.float32))],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _encoded(vector: np.ndarray, encoding_format: EncodingFormat) -> list[float] | str:
    """float: a list of numbers; base64: the little-endian float32 bytes, as OpenAI sends them (and its Python SDK
    asks for by default)."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
