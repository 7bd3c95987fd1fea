"""The vector backends by name (``settings.vector_store``): a new backend is a module implementing
``rag_service.storage.vectorstore.VectorIndex`` plus an entry here. Apart from the interface so that a backend's module
may import the interface without a circle."""

from __future__ import annotations

from collections.abc import Callable

from rag_service.errors import ConfigError
from rag_service.settings import Settings
from rag_service.storage.vectorstore import VectorIndex


def _chroma(settings: Settings) -> VectorIndex:
    from rag_service.storage.chroma import ChromaIndex  # chromadb loads only when a workspace opens its vectors

    return ChromaIndex(settings.data_dir, settings.chroma_url)


# Name -> backend (``settings.vector_store``). Chroma embedded or a ``chroma run`` server, by ``chroma_url``.
VECTOR_BACKENDS: dict[str, Callable[[Settings], VectorIndex]] = {"chroma": _chroma}


def open_vector_index(settings: Settings) -> VectorIndex:
    factory = VECTOR_BACKENDS.get(settings.vector_store)
    if factory is None:
        raise ConfigError(f"vector_store: unknown {settings.vector_store!r}; one of {', '.join(VECTOR_BACKENDS)}")
    return factory(settings)
