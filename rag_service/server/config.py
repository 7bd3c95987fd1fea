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
    ingest_queue_size: int = Field(16, ge=1, description="Upload jobs that may wait for the ingest worker.")
    max_upload_files: int = Field(20, ge=1, description="Files accepted in one upload request.")
    upload_dir: Path | None = Field(
        None, description="Where uploads wait for ingestion (default: a private temporary directory).")

    def api_keys(self) -> frozenset[str]:
        """Every accepted key; empty means the API is open (a trusted network, a local demo)."""
        keys = set()
        if self.api_key is not None:
            keys.add(self.api_key.get_secret_value().strip())
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read RAG_API_KEYS_FILE {self.api_keys_file}: {exc}") from exc
            keys.update(line.strip() for line in lines if not line.lstrip().startswith("#"))
        return frozenset(k for k in keys if k)


def load_server_settings() -> ServerSettings:
    """From the environment, with validation failures as one readable ConfigError (as the core's settings)."""
    try:
        return ServerSettings()
    except ValidationError as exc:
        problems = "; ".join(f"RAG_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid server settings: {problems}") from None
