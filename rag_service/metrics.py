"""The process's Prometheus metrics (``prometheus-client``), counted where things happen: HTTP requests
(``server.logs``), chats (``server.metrics.ChatMeter``), searches, ingested chunks (``ingestion.worker``) and store
errors (``server.problems``). ``GET /metrics`` serves them with the values read at scrape time (chat queue, jobs);
``rag worker`` can serve them too (RAG_WORKER_METRICS_LISTEN). docs/api.md "Metrics" lists every family.

One process per ``rag serve`` replica, so the default registry's per-process values are the replica's: Prometheus
scrapes each replica and sums over them. Labels only ever take values from a fixed set (route templates, never raw
paths; a mode, a reason, a status), so no series is created per KB, document, question or user.

At the bottom of the layers (tests/test_imports.py): it knows records and errors, nothing above.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

from rag_service.errors import StoreError
from rag_service.records import Answer

# Seconds: HTTP answers run from a millisecond (health) to minutes (a chat on a small CPU, an upload).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# A CPU-only answer: the first token in a second or two, the checked answer in 5-60 s (README "Answer speed").
CHAT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)

HTTP_REQUESTS = Counter("rag_http_requests", "HTTP requests answered, by method, route template and status",
                        ("method", "route", "status"))
HTTP_DURATION = Histogram("rag_http_request_duration_seconds",
                          "Time from a request's arrival to its response's last byte (a chat stream: its end)",
                          ("method", "route"), buckets=HTTP_BUCKETS)

CHAT_FIRST_TOKEN = Histogram("rag_chat_time_to_first_token_seconds",
                             "From a chat's admission (queue wait included) to the first piece of its answer",
                             buckets=CHAT_BUCKETS)
CHAT_ANSWER = Histogram("rag_chat_answer_seconds",
                        "From a chat's admission to its checked answer (the done event / the JSON answer)",
                        buckets=CHAT_BUCKETS)
PROMPT_TOKENS = Counter("rag_chat_prompt_tokens", "Prompt tokens of answered chats, as the generator counted them")
COMPLETION_TOKENS = Counter("rag_chat_completion_tokens", "Tokens the generator wrote in answered chats")
CHAT_OUTCOMES = ("answered", "refused", "failed", "abandoned")
CHATS = Counter("rag_chats", "Chats that ended: answered, refused, failed (an error), abandoned (the client left)",
                ("outcome",))
# Why an answer was a refusal (``refusal_reason``).
REFUSAL_REASONS = ("retrieval", "model", "unsupported")
REFUSALS = Counter("rag_chat_refusals", "Refused answers by reason: retrieval (no passage close enough, before the "
                   "model), model (it said the documents do not answer), unsupported (the checks withdrew every "
                   "sentence)", ("reason",))

SEARCH_MODES = ("hybrid", "vector", "bm25")  # rag_service.retrieval.search.Mode
SEARCHES = Counter("rag_searches", "Searches through POST /v1/kbs/{kb}/search, by mode", ("mode",))

INGEST_CHUNKS = Counter("rag_ingest_chunks", "Chunks ingested (embedded and indexed) by this process's workers; "
                        "rate() of it is the ingest throughput")
INGEST_FILE_STATUSES = ("added", "replaced", "unchanged", "failed")
INGEST_FILES = Counter("rag_ingest_files", "Uploaded files this process's workers finished, by result",
                       ("status",))
JOB_OUTCOMES = ("succeeded", "failed", "cancelled")
INGEST_JOBS = Counter("rag_ingest_jobs", "Upload jobs this process's workers ended, by outcome", ("outcome",))

STORES = ("database", "vector_store", "unknown")
STORE_ERRORS = Counter("rag_store_errors", "Database and vector-store failures that reached a client as an error "
                       "(503 store_error, or a 500 raised by a store's driver)", ("store",))

# Every series exists from the start (at 0), so rate() and dashboards see a fresh process's zeros.
for _outcome in CHAT_OUTCOMES:
    CHATS.labels(_outcome)
for _reason in REFUSAL_REASONS:
    REFUSALS.labels(_reason)
for _mode in SEARCH_MODES:
    SEARCHES.labels(_mode)
for _status in INGEST_FILE_STATUSES:
    INGEST_FILES.labels(_status)
for _outcome in JOB_OUTCOMES:
    INGEST_JOBS.labels(_outcome)
for _store in STORES:
    STORE_ERRORS.labels(_store)


def refusal_reason(answer: Answer) -> str | None:
    """Why ``answer`` is a refusal (None when it is not one), from its trace: refused before the model was asked
    (``retrieval``), the model's own refusal (``model``), or every sentence withdrawn by the checks
    (``unsupported``)."""
    if not answer.refused:
        return None
    if answer.trace.get("refused_before_llm"):
        return "retrieval"
    verification = answer.trace.get("verification")
    if isinstance(verification, dict) and verification.get("model_refused"):
        return "model"
    return "unsupported"


def observe_answer(answer: Answer, first_token_s: float | None, answer_s: float) -> None:
    if first_token_s is not None:
        CHAT_FIRST_TOKEN.observe(first_token_s)
    CHAT_ANSWER.observe(answer_s)
    PROMPT_TOKENS.inc(max(answer.usage.prompt_tokens, 0))
    COMPLETION_TOKENS.inc(max(answer.usage.completion_tokens, 0))
    reason = refusal_reason(answer)
    CHATS.labels("refused" if reason else "answered").inc()
    if reason:
        REFUSALS.labels(reason).inc()


def observe_search(mode: str) -> None:
    if mode in SEARCH_MODES:
        SEARCHES.labels(mode).inc()


def observe_ingested_file(result: dict[str, Any]) -> None:
    """One file's result as a job records it (``FileResult.to_json``)."""
    status = str(result.get("status"))
    if status in INGEST_FILE_STATUSES:
        INGEST_FILES.labels(status).inc()
    chunks = result.get("chunks")
    if status in ("added", "replaced") and isinstance(chunks, int) and chunks > 0:
        INGEST_CHUNKS.inc(chunks)


def observe_job(outcome: str) -> None:
    if outcome in JOB_OUTCOMES:
        INGEST_JOBS.labels(outcome).inc()


def store_of(exc: BaseException) -> str | None:
    """Which store failed, when ``exc`` is a store's failure: a StoreError, or a driver's error (sqlite3, psycopg,
    chromadb) anywhere in its chain of causes; None for anything else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    said = ""  # a StoreError's own words name its store ("cannot reach the Chroma server ...")
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StoreError):
            said += f" {current}".lower()
        module = type(current).__module__.split(".", 1)[0]
        if module in ("sqlite3", "psycopg", "psycopg_pool"):
            return "database"
        if module == "chromadb":
            return "vector_store"
        current = current.__cause__ or current.__context__
    if not said:
        return None
    if "chroma" in said or "vector" in said:
        return "vector_store"
    if "postgresql" in said or "database" in said or "sqlite" in said:
        return "database"
    return "unknown"


def count_store_error(exc: BaseException) -> None:
    """Called where any error becomes a problem response (``server.problems.problem_body``)."""
    store = store_of(exc)
    if store is not None:
        STORE_ERRORS.labels(store).inc()
