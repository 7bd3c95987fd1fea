"""The ``rag`` command (entry point ``rag_service.cli.main:main``; ``python -m rag_service.cli`` works too)."""
