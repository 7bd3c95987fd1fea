"""Settings of the HTTP server only. They live here, not in the core's ``Settings``, because the CLI and
the library have no use for keys or queue sizes; both read the same ``RAG_*`` environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag_service.errors import ConfigError


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    api_key: SecretStr | None = Field(None, description="When set, every /v1 route needs 'Authorization: Bearer'.")
    api_keys_file: Path | None = Field(None, description="A file of accepted API keys, one per line ('#' comments).")
    chat_concurrency: int = Field(
        1, ge=1, description="Chats generated at once: 1 for in-process llama.cpp (one context); an LLM server "
        "with several slots can take more.")
    chat_queue_size: int = Field(8, ge=0, description="Chats that may wait for the LLM; past that, 503 + Retry-After.")
    ingest_queue_size: int = Field(16, ge=1, description="Upload jobs that may wait for an ingest worker (queued or "
                                   "running, counted over every replica on the same database).")
    serve_workers: int = Field(1, ge=0, le=8, description="Ingest workers run inside 'rag serve' (0: this replica "
                               "only queues uploads, for deployments where 'rag worker' processes ingest).")
    max_upload_files: int = Field(20, ge=1, description="Files accepted in one upload request.")
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
    max_history_messages: int = Field(
        64, ge=0, description="Messages an OpenAI-style request may carry before its question; more is refused (400).")
    allow_open: bool = Field(
        False, description="Let `rag serve` listen on a non-loopback address without API keys (a trusted "
        "network only: every route is then open to anyone who can reach it).")
    trusted_hosts: str = Field(
        "", description="Comma-separated Host header values to accept ('*' = any). Default: any when API keys "
        "are set, else only localhost names (an open local API must not answer DNS-rebinding pages).")

    def api_keys(self) -> frozenset[str]:
        """Every accepted key; empty means the API is open (a trusted network, a local demo). A key setting
        that yields no key (blank, or a file of comments) is an error, never a silently open API."""
        keys = set()
        if self.api_key is not None:
            keys.add(self.api_key.get_secret_value().strip())
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read RAG_API_KEYS_FILE {self.api_keys_file}: {exc}") from exc
            keys.update(line.strip() for line in lines if not line.lstrip().startswith("#"))
        accepted = frozenset(k for k in keys if k)
        if not accepted and (self.api_key is not None or self.api_keys_file is not None):
            given = "RAG_API_KEY is blank" if self.api_key is not None else \
                f"RAG_API_KEYS_FILE {self.api_keys_file} lists no key"
            raise ConfigError(f"{given}: refusing to start with every route open (unset it to run without keys)")
        return accepted

    def allowed_hosts(self, keyed: bool) -> frozenset[str] | None:
        """Host names (without port) to accept; None = any."""
        names = {h.strip().lower() for h in self.trusted_hosts.split(",") if h.strip()}
        if "*" in names or (not names and keyed):
            return None
        return frozenset(names or LOOPBACK_NAMES)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def load_server_settings() -> ServerSettings:
    """From the environment, with validation failures as one readable ConfigError (as the core's settings)."""
    try:
        return ServerSettings()
    except ValidationError as exc:
        problems = "; ".join(f"RAG_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid server settings: {problems}") from None
