"""A disk cache in front of the LLM for evaluation runs.

Answer evaluations are dominated by the model's time (seconds per question on a small CPU), and most
changes worth measuring (verification rules, thresholds, scoring) do not change what the model is asked.
Every call is keyed by the model file, the call kind, the exact messages and the sampling parameters, so
a re-run only pays for calls whose prompt changed. The first run's timings are stored with the result
and reported instead of the cache's own (near zero) time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag_service.models.llm import LLM, Completion


class CachedLLM(LLM):
    def __init__(self, inner: LLM, path: Path) -> None:
        self.inner = inner
        self.name = inner.name
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        # Whether a call since the last reset() was answered from the cache: the question's own timings
        # (gate, time to first token) are then not this run's measurement.
        self.hit_since_reset = False
        # Timings of the last streamed completion as first measured: {first_token_s, generate_s}.
        self.last_timing: dict[str, float] = {}

    def _key(self, kind: str, messages: list[dict[str, str]], **params: Any) -> str:
        blob = json.dumps([self.name, kind, messages, params], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _get(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        self.hit_since_reset = True
        return json.loads(row[0])

    def reset(self) -> None:
        self.hit_since_reset = False
        self.last_timing = {}

    def _put(self, key: str, value: Any) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?)", (key, json.dumps(value, ensure_ascii=False)))

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float,
               watch: tuple[str, ...] = ()) -> Iterator[str | Completion]:
        key = self._key("chat", messages, max_tokens=max_tokens, temperature=temperature)
        cached = self._get(key)
        if cached is not None and watch and cached.get("watched") is None:
            cached = None  # stored before the first-token probability was asked for: measure it now
        if cached is not None:
            self.last_timing = cached["timing"]
            if cached["text"]:
                yield cached["text"]
            yield Completion(cached["text"], cached["prompt_tokens"], cached["completion_tokens"],
                             cached.get("watched"))
            return
        started = time.perf_counter()
        first: float | None = None
        for item in self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature, watch=watch):
            if isinstance(item, Completion):
                timing = {"first_token_s": round((first if first is not None else time.perf_counter() - started), 4),
                          "generate_s": round(time.perf_counter() - started, 4)}
                self.last_timing = timing
                self._put(key, {"text": item.text, "prompt_tokens": item.prompt_tokens,
                                "completion_tokens": item.completion_tokens, "timing": timing,
                                "watched": item.watched})
            elif first is None:
                first = time.perf_counter() - started
            yield item

    def yes_probability(self, messages: list[dict[str, str]], *, after_answer: bool = False) -> float:
        key = self._key("yes", messages)  # threads change no result: the key ignores after_answer
        cached = self._get(key)
        if cached is not None:
            return float(cached)
        value = self.inner.yes_probability(messages, after_answer=after_answer)
        self._put(key, value)
        return value

    def close(self) -> None:
        self._db.close()
