"""Lexical indexes built from stored chunks: BM25, the glossary tokenizer, kept in step with the catalog."""
