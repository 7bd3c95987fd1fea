"""Typed errors of the core.

Every failure a user can cause or fix has its own class with a stable ``code``; the CLI prints
``error: <message>`` and the HTTP layer maps the code to a problem response, each in one place.
"""

from __future__ import annotations


class RagError(Exception):
    """Base of every error the core raises on purpose."""

    code = "rag_error"
    exit_code = 1


class ConfigError(RagError):
    code = "config_error"


class ModelError(RagError):
    """A bundled or configured model cannot be located, assembled or verified."""

    code = "model_unavailable"


class ModelPackageMissingError(ModelError):
    code = "model_package_missing"


class ModelHashMismatchError(ModelError):
    code = "model_hash_mismatch"


class EmbedderMismatchError(RagError):
    code = "embedder_mismatch"


class KnowledgeBaseNotFoundError(RagError):
    code = "kb_not_found"


class KnowledgeBaseExistsError(RagError):
    code = "kb_exists"


class DocumentNotFoundError(RagError):
    code = "document_not_found"


class GlossaryEntryNotFoundError(RagError):
    code = "glossary_entry_not_found"


class DocumentExistsError(RagError):
    """A different document already has this source name, and the caller did not ask to replace it."""

    code = "document_exists"


class BusyError(RagError):
    """A bounded resource (a queue, the write lock) is taken; come back after ``retry_after`` seconds."""

    code = "busy"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidInputError(RagError):
    """Bad user input: an unreadable path, an empty file, an unsupported format."""

    code = "invalid_input"


class IngestCancelledError(RagError):
    """The ingest job was cancelled (``DELETE /v1/jobs/{id}``, or its KB was deleted) or taken over by another
    worker: the worker stops between two embedding batches. Never a failed file: the pipeline lets it through."""

    code = "job_cancelled"


class StoreError(RagError):
    code = "store_error"


class UniqueViolationError(StoreError):
    """A row with this key exists already (a concurrent writer was first); each database backend raises it for its
    own driver's error, so the stores never see a driver exception."""


class LLMError(RagError):
    code = "llm_error"


class ForbiddenError(RagError):
    """The caller may see this knowledge base (or thing) but not do this to it: a reader uploading, an editor
    deleting a KB they do not manage, anyone but an admin managing people and keys."""

    code = "forbidden"


class RateLimitedError(BusyError):
    """One API key sent more requests, or ran more chats at once, than its limit (RAG_KEY_REQUESTS_PER_MINUTE,
    RAG_KEY_CONCURRENT_CHATS)."""

    code = "rate_limited"


class UserNotFoundError(RagError):
    code = "user_not_found"


class UserExistsError(RagError):
    code = "user_exists"


class KeyNotFoundError(RagError):
    code = "key_not_found"


class GrantNotFoundError(RagError):
    code = "grant_not_found"
