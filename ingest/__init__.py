"""Ingestion: load files, clean them, split into chunks, embed and store them."""
