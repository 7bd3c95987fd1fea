"""Retrieval evaluation through the real pipeline: the data set's documents are ingested by the
``Ingestor`` (same splitter, embedder, catalog and Chroma as production) and every query goes through
``Retriever.search``, so the numbers measure what users get.

Indexes are cached under ``<cache>/<key>``, the key hashing the data set's content, the exact documents
indexed and every setting that changes the index, so a second run with the same inputs only searches.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from rag_service.errors import InvalidInputError, RagError
from rag_service.eval.datasets import Dataset, EvalQuery
from rag_service.eval.metrics import mean, mean_metrics, retrieval_metrics
from rag_service.ingestion.pipeline import Ingestor, SplitOptions
from rag_service.models.registry import force_offline
from rag_service.records import Document, Hit
from rag_service.retrieval.search import MODES, Mode, Retriever
from rag_service.settings import load_settings
from rag_service.storage.catalog import KnowledgeBase
from rag_service.workspace import Workspace

KB_NAME = "eval"
EMBEDDERS = ("e5", "minilm")
_SUBSTRING_GOLD = "\0gold-substring"  # the one "relevant document" of a query judged by evidence substrings


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    """How the index is built and searched. The defaults index one chunk per document for corpora of
    abstracts and paragraphs (SciFact, CMRC): a 4,000-character sentence packer rarely cuts them, and
    the embedder windows long inputs itself."""

    embedder: str = "e5"
    splitter: str = "sentence"
    chunk_size: int = 4000
    chunk_overlap: int = 0
    modes: tuple[Mode, ...] = MODES
    k: int = 10

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise InvalidInputError(f"unknown search mode(s) {', '.join(unknown) or '(none)'} "
                                    f"(choose from {', '.join(MODES)})")
        if self.k < 1:
            raise InvalidInputError("k must be at least 1")


@dataclass(frozen=True, slots=True)
class EvalIndex:
    """An opened index and how it came to be (for the run record)."""

    ws: Workspace
    kb: KnowledgeBase
    key: str
    documents: int
    chunks: int
    ingested: int  # documents ingested by this run; 0 when the cache already held them all
    ingest_seconds: float
    aliases: dict[str, list[str]]  # indexed source -> every data set id with the same text

    def doc_id_map(self) -> dict[str, str]:
        """Data set document id -> the catalog document id holding its text (for search filters)."""
        return {alias: d.id for d in self.ws.catalog.documents(self.kb.id, status="ready")
                for alias in self.aliases.get(d.source, [])}


@dataclass(frozen=True, slots=True)
class ModeResult:
    metrics: dict[str, float]  # means over the evaluated queries
    latency_ms: float  # mean wall time of one Retriever.search call
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    context_chars: float = 0.0  # mean characters of the top search_k hits: what the LLM would be given to read

    def to_json(self) -> dict[str, float | int]:
        return {**self.metrics, "latency_ms": round(self.latency_ms, 2), "queries": len(self.per_query)}


@dataclass(frozen=True, slots=True)
class RetrievalReport:
    dataset: str
    content_hash: str
    config: RetrievalConfig
    index: EvalIndex
    results: dict[str, ModeResult]
    skipped: int  # queries without retrieval gold

    def to_json(self) -> dict[str, dict[str, float | int]]:
        """The public ``rag eval retrieval --json`` shape: mode -> metrics."""
        return {mode: result.to_json() for mode, result in self.results.items()}


def default_cache_dir() -> Path:
    """``RAG_EVAL_CACHE``, else ``<data dir>/eval-cache`` (``./data/eval-cache`` from the checkout)."""
    explicit = os.environ.get("RAG_EVAL_CACHE")
    return Path(explicit) if explicit else load_settings().data_dir / "eval-cache"


def to_document(doc_id: str, title: str, text: str) -> Document:
    """A data set document as the pipeline's record: ``source`` carries the data set id, the title
    heads the text (both are searchable), and the id is the content hash like a loaded file's."""
    body = f"{title}\n\n{text}" if title else text
    sha = hashlib.sha256(body.encode()).hexdigest()
    return Document(id=sha[:16], source=doc_id, text=body, sha256=sha)


def _index_inputs(dataset: Dataset, config: RetrievalConfig, docs: Sequence[Document],
                  chunk_unit: str) -> dict[str, str | int]:
    """Everything that determines an index's contents; its hash is the cache key."""
    listing = hashlib.sha256("\n".join(sorted(f"{d.id}\t{d.source}" for d in docs)).encode()).hexdigest()
    return {"dataset": dataset.content_hash, "documents": listing, "embedder": config.embedder,
            "splitter": config.splitter, "chunk_size": config.chunk_size, "chunk_overlap": config.chunk_overlap,
            "chunk_unit": chunk_unit}


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """What an index of a data set holds and its cache key, known before anything is opened (so a caller
    can find its cached results without loading a model or a database)."""

    key: str
    inputs: dict[str, str | int]
    docs: dict[str, Document]  # document id -> document, identical texts merged
    aliases: dict[str, list[str]]  # indexed source -> every data set id with the same text


def plan_index(dataset: Dataset, config: RetrievalConfig) -> IndexPlan:
    """The documents ``dataset`` indexes under ``config`` and the index's cache key."""
    if config.embedder not in EMBEDDERS:
        raise InvalidInputError(f"unknown embedder '{config.embedder}' (choose from {', '.join(EMBEDDERS)})")
    if not dataset.docs:
        raise InvalidInputError(f"data set '{dataset.name}' has no documents to index")
    docs: dict[str, Document] = {}
    aliases: dict[str, list[str]] = {}
    for d in dataset.docs:  # identical texts are one indexed document whose hits count for each of their ids
        doc = to_document(d.id, d.title, d.text)
        aliases.setdefault(docs.setdefault(doc.id, doc).source, []).append(d.id)
    inputs = _index_inputs(dataset, config, list(docs.values()), load_settings().chunk_unit)
    return IndexPlan(hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16], inputs, docs,
                     aliases)


def build_index(dataset: Dataset, config: RetrievalConfig, cache_dir: Path | None = None, *,
                progress: bool = False) -> EvalIndex:
    """Open the cached index for these documents and settings, ingesting whatever it does not yet hold
    as ready (a killed run resumes where it stopped). The caller closes ``index.ws``."""
    plan = plan_index(dataset, config)
    docs, inputs, key = plan.docs, plan.inputs, plan.key
    force_offline()
    data_dir = (cache_dir or default_cache_dir()) / key
    # chroma_url pinned to None: a cached index must live next to its catalog, never on a server.
    ws = Workspace(load_settings(data_dir=data_dir, embedder=config.embedder, chroma_url=None,
                                 chunk_unit=inputs["chunk_unit"]))
    try:
        options = SplitOptions(config.splitter, config.chunk_size, config.chunk_overlap)
        ingestor, _ = Ingestor.open(ws, KB_NAME, options, progress=progress)
        record = {"name": dataset.name, "document_count": len(docs), **inputs}  # what this cache entry holds
        (data_dir / "eval-index.json").write_text(json.dumps(record, indent=2) + "\n")
        ready = {d.id for d in ws.catalog.documents(ingestor.kb.id, status="ready")}
        missing = [doc for doc_id, doc in docs.items() if doc_id not in ready]
        started = time.perf_counter()
        failed = [r for r in ingestor.run_documents(missing) if r.status == "failed"] if missing else []
        if failed:
            raise RagError(f"{len(failed)} of {len(missing)} documents failed to ingest; first: {failed[0].error}")
        seconds = time.perf_counter() - started
        records = ws.catalog.documents(ingestor.kb.id, status="ready")
    except BaseException:
        ws.close()
        raise
    return EvalIndex(ws, ingestor.kb, key, len(records), sum(r.chunks for r in records), len(missing), seconds,
                     plan.aliases)


def _contains_any(text: str, needles: Sequence[str]) -> bool:
    """Case- and whitespace-insensitive containment, so line breaks and casing do not hide evidence."""
    hay = " ".join(text.split()).casefold()
    return any(" ".join(n.split()).casefold() in hay for n in needles)


def judge(query: EvalQuery, hits: Sequence[Hit], aliases: dict[str, list[str]]) -> tuple[list[str], dict[str, int]]:
    """The document-level ranking of ``hits`` (each document at its best chunk's rank) and the gold it
    is scored against. Gold documents decide when the query has any; otherwise a chunk containing any
    gold substring is relevant, which does not depend on how the documents were chunked."""
    if any(g > 0 for g in query.gold.values()):
        labels = [doc for hit in hits for doc in aliases.get(hit.chunk.source, [hit.chunk.source])]
        return list(dict.fromkeys(labels)), query.gold
    labels = [_SUBSTRING_GOLD if _contains_any(hit.chunk.text, query.gold_substrings) else hit.chunk.doc_id
              for hit in hits]
    return list(dict.fromkeys(labels)), {_SUBSTRING_GOLD: 1}


def evaluate(ws: Workspace, kb: KnowledgeBase, queries: Sequence[EvalQuery], modes: Sequence[Mode], k: int = 10,
             *, aliases: dict[str, list[str]] | None = None, progress: bool = False) -> dict[str, ModeResult]:
    """Search every judged query in every mode, ``max(100, k)`` deep, and score it. Works on any knowledge
    base: hits are labelled by their document's source, which ``aliases`` may expand."""
    judged = [q for q in queries if q.judged]
    if not judged:
        raise InvalidInputError("no query has gold documents or gold substrings to score retrieval against")
    retriever = Retriever(ws, kb)
    for mode in modes:  # load the BM25 index and warm the embedder outside the timed searches
        retriever.search("warm up", k=1, mode=mode)
    depth = max(100, k)
    per_query: dict[str, dict[str, dict[str, float]]] = {m: {} for m in modes}
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    context: dict[str, list[int]] = {m: [] for m in modes}
    for query in tqdm(judged, desc="evaluating", unit="query", disable=not progress):
        for mode in modes:
            started = time.perf_counter()
            hits = retriever.search(query.text, k=depth, mode=mode)
            seconds[mode].append(time.perf_counter() - started)
            context[mode].append(sum(len(hit.chunk.text) for hit in hits[:ws.settings.search_k]))
            per_query[mode][query.id] = retrieval_metrics(*judge(query, hits, aliases or {}), k=k)
    return {m: ModeResult(mean_metrics(list(per_query[m].values())), 1000 * mean(seconds[m]), per_query[m],
                          mean(context[m])) for m in modes}


def run_retrieval(dataset: Dataset, config: RetrievalConfig = RetrievalConfig(), cache_dir: Path | None = None,
                  *, progress: bool = False) -> RetrievalReport:
    """Build or reuse the index, then evaluate every judged query of ``dataset`` in ``config.modes``."""
    index = build_index(dataset, config, cache_dir, progress=progress)
    try:
        results = evaluate(index.ws, index.kb, dataset.queries, config.modes, config.k, aliases=index.aliases,
                           progress=progress)
    finally:
        index.ws.close()
    return RetrievalReport(dataset.name, dataset.content_hash, config, index, results,
                           skipped=sum(not q.judged for q in dataset.queries))
