"""Per-key limits on users' keys: requests per minute and chats at once (the operator's keys from the environment
have none). Kept in this process: with N replicas behind a balancer a key gets up to N times the limit
(README "Teams"). A refused request gets 429 with Retry-After."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from rag_service.admin.access import Principal
from rag_service.errors import RateLimitedError


@dataclass
class _Bucket:
    tokens: float
    at: float


class KeyLimits:
    def __init__(self, per_minute: int, chats: int) -> None:
        self.per_minute = per_minute  # 0: no limit
        self.chats = chats  # 0: no limit
        self._buckets: dict[str, _Bucket] = {}
        self._running: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def request(self, who: Principal) -> None:
        """A token bucket per key: ``per_minute`` requests in a burst, refilled at ``per_minute`` a minute."""
        if who.key_id is None or not self.per_minute:
            return
        now = time.monotonic()
        rate = self.per_minute / 60.0
        with self._lock:
            bucket = self._buckets.setdefault(who.key_id, _Bucket(float(self.per_minute), now))
            bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens < 1.0:
                wait = math.ceil((1.0 - bucket.tokens) / rate)
                raise RateLimitedError(f"this API key sent more than {self.per_minute} requests a minute "
                                       "(RAG_KEY_REQUESTS_PER_MINUTE); retry later", max(1, wait))
            bucket.tokens -= 1.0

    def start_chat(self, who: Principal, retry_after: int) -> None:
        """Count a chat of this key until ``end_chat``; refused while ``chats`` of its chats run or wait."""
        if who.key_id is None or not self.chats:
            return
        with self._lock:
            if self._running[who.key_id] >= self.chats:
                raise RateLimitedError(f"this API key already has {self.chats} chats running or waiting "
                                       "(RAG_KEY_CONCURRENT_CHATS); retry when one ends", retry_after)
            self._running[who.key_id] += 1

    def end_chat(self, who: Principal) -> None:
        if who.key_id is None or not self.chats:
            return
        with self._lock:
            self._running[who.key_id] -= 1
            if not self._running[who.key_id]:
                del self._running[who.key_id]
