"""Bundled models located and verified (registry), the embedders, and the LLM backends."""
