"""What the HTTP server derives from its settings (the ``server`` section of ``rag_service.settings``): the
accepted API keys and the Host names it answers."""

from __future__ import annotations

from rag_service.errors import ConfigError
from rag_service.settings import Settings


def api_keys(settings: Settings) -> frozenset[str]:
    """Every accepted key; empty means the API is open (a trusted network, a local demo). A key setting
    that yields no key (blank, or a file of comments) is an error, never a silently open API."""
    keys = set()
    if settings.api_key is not None:
        keys.add(settings.api_key.get_secret_value().strip())
    if settings.api_keys_file is not None:
        try:
            lines = settings.api_keys_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read RAG_API_KEYS_FILE {settings.api_keys_file}: {exc}") from exc
        keys.update(line.strip() for line in lines if not line.lstrip().startswith("#"))
    accepted = frozenset(k for k in keys if k)
    if not accepted and (settings.api_key is not None or settings.api_keys_file is not None):
        given = "RAG_API_KEY is blank" if settings.api_key is not None else \
            f"RAG_API_KEYS_FILE {settings.api_keys_file} lists no key"
        raise ConfigError(f"{given}: refusing to start with every route open (unset it to run without keys)")
    return accepted


def allowed_hosts(settings: Settings, keyed: bool) -> frozenset[str] | None:
    """Host names (without port) to accept; None = any."""
    names = {h.strip().lower() for h in settings.trusted_hosts.split(",") if h.strip()}
    if "*" in names or (not names and keyed):
        return None
    return frozenset(names or LOOPBACK_NAMES)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
