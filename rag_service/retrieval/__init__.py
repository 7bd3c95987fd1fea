"""Questions to ranked chunks: BM25 and vector search, fusion, expansion, filters, reranking, feedback boosts."""
