"""Generation backends behind one interface: in-process llama.cpp (default) or any OpenAI-compatible
HTTP server (llama.cpp server, vLLM) when ``llm_base_url`` is set."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

from rag_service.errors import LLMError, ModelError
from rag_service.models.registry import resolve_generator
from rag_service.settings import Settings
from rag_service.threads import ingest_active


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    # Probability that the reply began with the first token of one of the ``watch`` texts (e.g. the refusal
    # sentence): how close the model came to writing it, read from the first step's distribution.
    watched: float | None = None


class LLM(ABC):
    name: str

    @abstractmethod
    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
               watch: tuple[str, ...] = ()) -> Iterator[str | Completion]:
        """Text pieces as they are generated, then the whole ``Completion`` (with token usage, and the
        first-token probability of the ``watch`` texts when the backend can tell)."""

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> Completion:
        for item in self.stream(messages, max_tokens=max_tokens, temperature=temperature):
            if isinstance(item, Completion):
                return item
        raise LLMError("the model stream ended without a completion")

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs in this model's tokenizer."""

    def prefill(self, messages: list[dict[str, str]]) -> None:
        """Evaluate ``messages`` so that later prompts beginning like them start from their state (a backend that
        keeps no such state does nothing)."""
        return None

    @abstractmethod
    def yes_probability(self, messages: list[dict[str, str]], *, after_answer: bool = False) -> float:
        """P(yes) / (P(yes) + P(no)) for the reply's first token: a graded yes/no judgement that a
        threshold can be calibrated on, instead of one sampled word. ``after_answer``: a check of a draft
        the user is already reading, so nobody waits on its first token (a backend may give it fewer threads
        while ingesting)."""


YES_WORDS = ("yes", "Yes", "YES", "是", "对")
NO_WORDS = ("no", "No", "NO", "否", "不")


def _yes_share(logprobs: dict[str, float]) -> float:
    """P(yes) among yes/no words, from (token text -> logprob) of the first reply token; 0.5 when the
    model put neither in its top choices."""
    import math

    yes = sum(math.exp(lp) for tok, lp in logprobs.items() if tok.strip() in YES_WORDS)
    no = sum(math.exp(lp) for tok, lp in logprobs.items() if tok.strip() in NO_WORDS)
    return yes / (yes + no) if yes + no > 0 else 0.5


def _first_logits() -> tuple[list[Any], Any]:
    """A llama.cpp logits processor that keeps a copy of the first generation step's logits (the list it
    fills), for reading yes/no or refusal probabilities without sampling them."""
    import numpy as np
    from llama_cpp import LogitsProcessorList

    captured: list[Any] = []

    def capture(_ids: object, scores: Any) -> Any:
        if not captured:
            captured.append(np.array(scores, dtype=np.float64))
        return scores

    return captured, LogitsProcessorList([capture])


class LlamaCppLLM(LLM):
    """One loaded GGUF. A llama.cpp context serves one completion at a time, hence the lock (held for
    a whole stream); the library reuses the KV cache for the longest common prompt prefix, which is
    why templates put the fixed system prompt and example first."""

    def __init__(self, model_path: Path, *, n_ctx: int, n_threads: int, n_threads_ingesting: int | None = None,
                 n_prompt_threads_ingesting: int | None = None, n_check_threads_ingesting: int | None = None,
                 prompt_cache_mb: int = 0) -> None:
        import numpy as np
        from llama_cpp import Llama, LlamaRAMCache

        self.name = model_path.name
        self._lock = threading.Lock()
        self._threads = n_threads
        # (generation, prompt evaluation) threads, as llama_set_n_threads takes them.
        self._threads_ingesting = (min(n_threads_ingesting or n_threads, n_threads),
                                   min(n_prompt_threads_ingesting or n_threads, n_threads))
        # Checks after the answer: their prompts on these threads while ingesting (unset: as answer prompts).
        self._check_threads_ingesting = (self._threads_ingesting[0], min(
            n_check_threads_ingesting or self._threads_ingesting[1], n_threads))
        self._threads_now = (n_threads, n_threads)
        try:
            with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
                # Read into memory, not mapped: llama.cpp repacks most weights into a layout of its own for this CPU,
                # so a mapping kept the file's pages resident beside the copy (+590 MB RSS for the 1.5B, same speed;
                # docs/benchmarks.md "Answer latency").
                self._llama = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads,
                                    n_threads_batch=n_threads, use_mmap=False, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp cannot load {model_path}: {exc}") from exc
        # Without logits_all nothing writes ``Llama.scores`` (the sampler reads the context's own logits), yet each
        # saved state copied its first 512 rows, 512 x vocabulary floats (297 MB for Qwen's), and each restore
        # scanned them: time on every model call and most of the RAM the prompt cache held (docs/benchmarks.md
        # "Answer latency"). One row keeps the library's ``scores[-1]`` reads valid.
        self._llama.scores = np.zeros((1, self._llama.n_vocab()), dtype=np.single)
        if prompt_cache_mb > 0:
            # The library saves the state after each completion and, before the next, restores the saved state
            # sharing the longest token prefix with it: answers keep their system prompt's KV between questions.
            self._llama.set_cache(LlamaRAMCache(capacity_bytes=prompt_cache_mb << 20))

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _pick_threads(self, *, after_answer: bool = False) -> None:
        """Fewer generation (and, if configured, prompt) threads while this process ingests (rag_service/threads.py);
        called under the lock."""
        if not ingest_active():
            wanted = (self._threads, self._threads)
        else:
            wanted = self._check_threads_ingesting if after_answer else self._threads_ingesting
        if wanted != self._threads_now:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self._llama.ctx, *wanted)
            self._threads_now = wanted

    @functools.cached_property
    def _yes_no_tokens(self) -> tuple[list[int], list[int]]:
        def first(words: tuple[str, ...]) -> list[int]:
            ids = {self._llama.tokenize(w.encode("utf-8"), add_bos=False, special=False)[0] for w in words}
            return sorted(ids)

        return first(YES_WORDS), first(NO_WORDS)

    def yes_probability(self, messages: list[dict[str, str]], *, after_answer: bool = False) -> float:
        """One forward pass over the prompt (llama.cpp reuses the KV cache of the longest common prefix,
        so a check that extends the answer's prompt costs only its own tokens); the next-token logits of
        the yes and no words are read, nothing is sampled that matters."""
        import numpy as np

        captured, processor = _first_logits()
        with self._lock:
            self._pick_threads(after_answer=after_answer)
            try:
                self._llama.create_chat_completion(messages=cast(Any, messages), max_tokens=1, temperature=0.0,
                                                   seed=0, logits_processor=processor)
            except ValueError as exc:
                raise LLMError(f"generation failed: {exc}") from exc
        scores = captured[0]
        yes_ids, no_ids = self._yes_no_tokens
        top = float(scores.max())
        yes = float(np.exp(scores[yes_ids] - top).sum())
        no = float(np.exp(scores[no_ids] - top).sum())
        return yes / (yes + no)

    def prefill(self, messages: list[dict[str, str]]) -> None:
        """One token's completion: with the prompt cache its state is saved, and a prompt sharing its beginning
        restores it instead of evaluating that part again."""
        with self._lock:
            self._pick_threads()
            try:
                self._llama.create_chat_completion(messages=cast(Any, messages), max_tokens=1, temperature=0.0, seed=0)
            except ValueError as exc:
                raise LLMError(f"generation failed: {exc}") from exc

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
               watch: tuple[str, ...] = ()) -> Iterator[str | Completion]:
        import numpy as np

        first, processor = _first_logits()
        processors = processor if watch else None
        with self._lock:
            self._pick_threads()
            pieces: list[str] = []
            try:
                chunks: Iterator[Any] = cast(Any, self._llama.create_chat_completion(
                    messages=cast(Any, messages), max_tokens=max_tokens, temperature=temperature, seed=0,
                    stream=True, logits_processor=processors))
                for chunk in chunks:
                    piece: str | None = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        pieces.append(piece)
                        yield piece
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise LLMError(f"generation failed: {exc}") from exc
            # After a stream the context holds prompt + generated tokens, one content piece per token.
            completion_tokens = len(pieces)
            watched = None
            if first:
                ids = sorted({self._llama.tokenize(w.encode("utf-8"), add_bos=False, special=False)[0] for w in watch})
                scores = first[0]
                probs = np.exp(scores - scores.max())
                watched = float(probs[ids].sum() / probs.sum())
            yield Completion("".join(pieces), max(self._llama.n_tokens - completion_tokens, 0), completion_tokens,
                             watched)


class OpenAIHttpLLM(LLM):
    """An OpenAI-compatible chat endpoint. Token counts for packing are estimated (the server's
    tokenizer is not local): about 3 UTF-8 bytes per token errs on the safe side for CJK and English."""

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout: float = 300.0) -> None:
        self.name = f"{model} at {base_url.rstrip('/')}"  # what the server runs: two servers are two models
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout

    def count_tokens(self, text: str) -> int:
        return len(text.encode("utf-8")) // 3 + 1

    def yes_probability(self, messages: list[dict[str, str]], *, after_answer: bool = False) -> float:
        """From the server's top log-probabilities of the first token when it reports them (llama.cpp
        server, vLLM, OpenAI); otherwise the one word it writes decides (1.0 or 0.0)."""
        body = {"model": self._model, "messages": messages, "max_tokens": 1, "temperature": 0.0,
                "logprobs": True, "top_logprobs": 20}
        try:
            resp = httpx.post(self._url, json=body, headers=self._headers, timeout=self._timeout)
            if resp.status_code in (400, 422, 500):  # a server without log-probabilities: the word decides
                body = {k: v for k, v in body.items() if k not in ("logprobs", "top_logprobs")}
                resp = httpx.post(self._url, json=body, headers=self._headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise LLMError(f"cannot reach the LLM server at {self._url}: {exc}") from exc
        if resp.status_code != 200:
            raise server_error(self._url, resp.status_code, resp.content)
        choice = (resp.json().get("choices") or [{}])[0]
        content = ((choice.get("logprobs") or {}).get("content") or [{}])[0]
        top = {t["token"]: t["logprob"] for t in content.get("top_logprobs") or [] if "token" in t}
        if top:
            return _yes_share(top)
        text = ((choice.get("message") or {}).get("content") or "").strip().lower()
        return 1.0 if text.startswith(("yes", "是", "对")) else 0.0

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
               watch: tuple[str, ...] = ()) -> Iterator[str | Completion]:
        """``watch`` is not reported: a server's top log-probabilities name tokens by their text, which
        cannot be matched reliably to the first token of a sentence."""
        body = {"model": self._model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                "stream": True, "stream_options": {"include_usage": True}}
        pieces: list[str] = []
        usage: dict[str, int] = {}
        try:
            with httpx.stream("POST", self._url, json=body, headers=self._headers, timeout=self._timeout) as resp:
                if resp.status_code != 200:
                    raise server_error(self._url, resp.status_code, resp.read())
                for line in resp.iter_lines():
                    if not line.startswith("data:") or line.strip() == "data: [DONE]":
                        continue
                    event = json.loads(line[5:])
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            pieces.append(piece)
                            yield piece
        except httpx.HTTPError as exc:
            raise LLMError(f"cannot reach the LLM server at {self._url}: {exc}") from exc
        text = "".join(pieces)
        yield Completion(text, int(usage.get("prompt_tokens", 0)),
                         int(usage.get("completion_tokens", len(pieces))))


def server_error(url: str, status: int, body: bytes) -> LLMError:
    """An LLM server's refusal, with the error type or code its JSON names but never its body's text: a server may
    echo the prompt (the documents' passages, the question) in its message, and this message reaches the log."""
    kind = ""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = json.loads(body).get("error")
        if isinstance(error, dict):
            kind = " ".join(str(error[k]) for k in ("type", "code") if isinstance(error.get(k), str | int))
    return LLMError(f"LLM server {url} answered {status}" + (f" ({kind})" if kind else ""))


@functools.lru_cache(maxsize=2)
def _load(model_path: Path, n_ctx: int, n_threads: int, n_threads_ingesting: int,
          n_prompt_threads_ingesting: int | None, n_check_threads_ingesting: int | None,
          prompt_cache_mb: int) -> LlamaCppLLM:
    return LlamaCppLLM(model_path, n_ctx=n_ctx, n_threads=n_threads, n_threads_ingesting=n_threads_ingesting,
                       n_prompt_threads_ingesting=n_prompt_threads_ingesting,
                       n_check_threads_ingesting=n_check_threads_ingesting, prompt_cache_mb=prompt_cache_mb)


@atexit.register
def _unload_models() -> None:
    """Drop the loaded models while the interpreter is whole: left to its teardown, llama_cpp's ``__del__`` runs
    after its own module globals are gone and prints a TypeError."""
    _load.cache_clear()


def get_llm(settings: Settings) -> LLM:
    """The process-wide model for these settings (loaded once)."""
    generator = resolve_generator(settings)
    if generator.base_url is not None:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
        return OpenAIHttpLLM(generator.base_url, settings.llm_model, key)
    path = generator.gguf(settings.models_dir)
    return _load(path.resolve(), settings.llm_context_size, settings.llm_threads, settings.llm_threads_ingesting,
                 settings.llm_prompt_threads_ingesting, settings.llm_check_threads_ingesting,
                 settings.llm_prompt_cache_mb)
