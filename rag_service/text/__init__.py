"""Text facts every layer needs: language detection, BM25 tokens, sentence and list units. Imports nothing above it."""
