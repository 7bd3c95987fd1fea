"""The REST service: ``create_app(settings)`` builds it, ``rag serve`` runs it."""

from rag_service.server.app import create_app, serve

__all__ = ["create_app", "serve"]
