"""rag-service: chat with your documents, grounded in retrieved passages, with citations."""

__version__ = "0.1.0"
