"""Evaluation harness: data set loaders (``datasets``), reference metric definitions (``metrics``), the
retrieval runner over the real ingestion and search pipeline (``retrieval``) and ``rag eval`` (``cli``)."""
