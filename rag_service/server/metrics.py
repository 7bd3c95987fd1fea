"""``GET /metrics``: the process's Prometheus metrics (``rag_service.metrics``) with the values read when Prometheus
scrapes: the chat queue (``ChatGate.stats``) and the upload jobs in the database (by state, and the age of the oldest
queued one). It needs a valid API key, as /v1 does, unless RAG_METRICS_PUBLIC=true.

``ChatMeter`` measures one chat from its admission: time to the first piece of text and to the checked answer,
tokens and refusal, into the metrics and into the request's log line (``logs.RequestRecord``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from rag_service import __version__, metrics
from rag_service.errors import ConfigError
from rag_service.records import Answer
from rag_service.server.logs import RequestRecord
from rag_service.settings import listen_address
from rag_service.storage.jobs import JobStore

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


class ChatMeter:
    """One chat's clock, started at its admission; ``seen`` is given each event as it is emitted."""

    def __init__(self, record: RequestRecord | None) -> None:
        self.record = record
        self.started = time.perf_counter()
        self.first_token_s: float | None = None
        self.ended = False

    def seen(self, item: object) -> None:
        now = time.perf_counter() - self.started
        if isinstance(item, str):
            if self.first_token_s is None and item:
                self.first_token_s = now
            return
        if isinstance(item, Answer) and not self.ended:
            self.ended = True
            metrics.observe_answer(item, self.first_token_s, now)
            if self.record is not None:
                ttft = self.first_token_s
                self.record.note(ttft_ms=None if ttft is None else round(ttft * 1000, 1),
                                 answer_ms=round(now * 1000, 1), prompt_tokens=item.usage.prompt_tokens,
                                 completion_tokens=item.usage.completion_tokens, refused=item.refused,
                                 refusal_reason=metrics.refusal_reason(item))

    def end(self, outcome: str) -> None:
        """A chat that ended without an answer: ``failed`` or ``abandoned``."""
        if self.ended:
            return
        self.ended = True
        metrics.CHATS.labels(outcome).inc()
        if self.record is not None:
            self.record.note(chat=outcome)


class BuildInfo(Collector):
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("rag_build_info", "The running version of rag-service", labels=["version"])
        info.add_metric([__version__], 1)
        yield info


class ChatQueueCollector(Collector):
    """This replica's chat queue, as ``ChatGate.stats`` reports it when Prometheus scrapes."""

    def __init__(self, chat_stats: Callable[[], dict[str, int]], concurrency: int) -> None:
        self.chat_stats = chat_stats
        self.concurrency = concurrency

    def collect(self) -> Iterator[Metric]:
        stats = self.chat_stats()
        admitted = stats["admitted"]
        yield GaugeMetricFamily("rag_chat_queue_admitted", "Chats admitted and not ended: generating or waiting",
                                value=admitted)
        yield GaugeMetricFamily("rag_chat_queue_waiting", "Admitted chats waiting for a generation slot",
                                value=max(admitted - self.concurrency, 0))
        yield GaugeMetricFamily("rag_chat_queue_capacity", "Chats that may be admitted at once (RAG_CHAT_CONCURRENCY "
                                "+ RAG_CHAT_QUEUE_SIZE); past it, 503", value=stats["capacity"])
        yield GaugeMetricFamily("rag_chat_concurrency", "Chats generated at once (RAG_CHAT_CONCURRENCY)",
                                value=self.concurrency)


class JobsCollector(Collector):
    """The upload jobs of the database, read when Prometheus scrapes: by state (the finished ones the database still
    keeps, the newest 1000) and the age of the oldest queued one. The database is shared by every replica and
    worker on it, so each reports the same values: take max(), not sum(), over them."""

    def __init__(self, store: Callable[[], JobStore]) -> None:
        self.store = store
        self._lock = threading.Lock()  # one scrape at a time on the store's connection

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, oldest = self.store().stats()
        by_state = GaugeMetricFamily("rag_jobs", "Upload jobs in the database by state (finished ones: the newest "
                                     "kept)", labels=["state"])
        for state in JOB_STATES:
            by_state.add_metric([state], counts.get(state, 0))
        yield by_state
        age = 0.0
        if oldest is not None:
            age = max((datetime.now(UTC) - datetime.fromisoformat(oldest)).total_seconds(), 0.0)
        yield GaugeMetricFamily("rag_jobs_oldest_queued_age_seconds", "Seconds the oldest queued upload job has "
                                "waited (0: none waits)", value=age)


class _Process(Collector):
    """The process-wide metrics (the default registry: rag_service.metrics, process_*, python_*)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def registry_with(*collectors: Collector) -> CollectorRegistry:
    """The process's metrics and ``collectors`` in one registry, to expose together."""
    registry = CollectorRegistry()
    registry.register(_Process())
    for collector in collectors:
        registry.register(collector)
    return registry


def install(app: FastAPI, registry: CollectorRegistry, *, public: bool) -> None:
    """``GET /metrics`` (outside the OpenAPI document: it is not part of the API)."""

    async def scrape(request: Request) -> Response:
        if not public:
            services = request.app.state.services
            principal = await run_in_threadpool(services.auth.authenticate, request.headers.get("authorization"))
            request.state.principal = principal  # the request's log line names the caller
            services.limits.request(principal)
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await run_in_threadpool(encoder, registry)
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

    app.add_api_route("/metrics", scrape, methods=["GET"], include_in_schema=False)


def serve_worker_metrics(listen: str, store: Callable[[], JobStore]) -> None:
    """``rag worker``'s metrics (its ingested chunks, files and jobs; the jobs in the database) at
    http://LISTEN/metrics, from a daemon thread, without a key (RAG_WORKER_METRICS_LISTEN)."""
    address = listen_address(listen)
    if address is None:
        raise ConfigError(f"RAG_WORKER_METRICS_LISTEN must be HOST:PORT, got {listen!r}")
    start_http_server(address[1], address[0], registry=registry_with(BuildInfo(), JobsCollector(store)))
