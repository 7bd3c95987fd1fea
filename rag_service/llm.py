"""Generation backends behind one interface. The foundation ships in-process llama.cpp."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from rag_service.errors import LLMError, ModelError
from rag_service.models import llm_model_path
from rag_service.settings import Settings


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class LLM(ABC):
    name: str

    @abstractmethod
    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> Completion:
        """One chat completion."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs in this model's own tokenizer."""


class LlamaCppLLM(LLM):
    """One loaded GGUF. A llama.cpp context serves one completion at a time, hence the lock; the
    library reuses the KV cache for the longest common prompt prefix (our fixed system prompt)."""

    def __init__(self, model_path: Path, *, n_ctx: int, n_threads: int) -> None:
        from llama_cpp import Llama

        self.name = model_path.name
        self._lock = threading.Lock()
        try:
            with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
                self._llama = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads,
                                    verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp cannot load {model_path}: {exc}") from exc

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> Completion:
        with self._lock:
            try:
                out = self._llama.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                         temperature=temperature, seed=0)
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise LLMError(f"generation failed: {exc}") from exc
        usage = out.get("usage") or {}
        return Completion(text=out["choices"][0]["message"]["content"] or "",
                          prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)))


@functools.lru_cache(maxsize=2)
def _load(model_path: Path, n_ctx: int, n_threads: int) -> LlamaCppLLM:
    return LlamaCppLLM(model_path, n_ctx=n_ctx, n_threads=n_threads)


def get_llm(settings: Settings) -> LLM:
    """The process-wide model for these settings (loaded once)."""
    path = llm_model_path(settings.llm_model_path, settings.models_dir)
    return _load(path.resolve(), settings.llm_context_size, settings.llm_threads)
