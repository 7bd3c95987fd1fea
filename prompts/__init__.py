"""Prompt templates as files: see rag_service/prompts.py for the format."""
