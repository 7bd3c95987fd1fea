"""``rag eval ...``: the evaluation harness on the command line.

``rag eval retrieval --json`` prints ``{"<mode>": {"ndcg@10", "recall@10", "recall@100", "mrr@10", "hit@5",
...}}``: a public contract like every other ``--json`` shape of ``rag`` (extend, never break).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rag_service.errors import InvalidInputError

if TYPE_CHECKING:  # the heavy modules are imported by the command, so `rag --help` stays fast
    from eval.datasets import Dataset


def _modes(value: str) -> tuple[str, ...]:
    """A comma-separated mode list; names are checked by RetrievalConfig, before anything is indexed."""
    return tuple(dict.fromkeys(m.strip() for m in value.split(",") if m.strip()))


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        n = int(value)
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return n

    return parse


def _load_dataset(args: argparse.Namespace) -> Dataset:
    from eval import datasets

    if args.beir:
        return datasets.load_beir(args.beir, args.split)
    if args.squad:
        return datasets.load_squad(args.squad)
    if args.clapnq:
        return datasets.load_clapnq(args.clapnq)
    return datasets.load_jsonl(args.jsonl, args.docs)


def _table(rows: dict[str, dict[str, float | int]]) -> str:
    """Modes as rows, metrics as columns, aligned."""
    metrics = [key for key in next(iter(rows.values())) if key != "queries"]
    lines = [f"{'mode':8}" + "".join(f"{m:>12}" for m in metrics)]
    for mode, values in rows.items():
        lines.append(f"{mode:8}" + "".join(f"{values[m]:>12.4f}" if m != "latency_ms" else f"{values[m]:>12.1f}"
                                           for m in metrics))
    return "\n".join(lines)


def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    if (args.docs or args.kb) and not args.jsonl:
        raise InvalidInputError("--docs and --kb go with --jsonl")
    if args.jsonl and bool(args.docs) == bool(args.kb):
        raise InvalidInputError("--jsonl needs either --docs DIR (index that folder) or --kb NAME (an existing "
                                "knowledge base)")
    dataset = _load_dataset(args).select(args.limit, args.corpus_limit)
    from eval.retrieval import RetrievalConfig, evaluate, run_retrieval  # heavy: after the cheap checks

    progress = not args.quiet
    config = RetrievalConfig(args.embedder, args.splitter, args.chunk_size, args.chunk_overlap, args.modes, args.k)
    if args.kb:
        from rag_service.models import force_offline
        from rag_service.settings import load_settings
        from rag_service.workspace import Workspace

        force_offline()
        ws = Workspace(load_settings())
        try:
            results = evaluate(ws, ws.catalog.get_kb(args.kb), dataset.queries, config.modes, config.k,
                               progress=progress)
        finally:
            ws.close()
        rows = {mode: result.to_json() for mode, result in results.items()}
        header = f"{dataset.name} ({dataset.content_hash[:12]}) against knowledge base '{args.kb}'"
    else:
        report = run_retrieval(dataset, config, args.cache_dir, progress=progress)
        rows = report.to_json()
        index = report.index
        header = (f"{dataset.name} ({dataset.content_hash[:12]}): {index.documents} documents, {index.chunks} "
                  f"chunks, embedder {config.embedder}, {config.splitter} {config.chunk_size}/"
                  f"{config.chunk_overlap}; index {index.key} "
                  + (f"built in {index.ingest_seconds:.0f}s" if index.ingested else "reused from cache"))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    queries = next(iter(rows.values()))["queries"]
    print(f"{header}\n{queries} queries, k={args.k}\n\n{_table(rows)}")
    return 0


def add_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``rag eval`` and its subcommands on the ``rag`` parser."""
    p = subparsers.add_parser("eval", help="evaluate retrieval on a benchmark or your own questions")
    sub = p.add_subparsers(dest="eval_cmd", required=True)

    s = sub.add_parser("retrieval", help="nDCG, recall, MRR and hit rate of bm25 / vector / hybrid search",
                       description="Index a data set through the real ingestion pipeline (cached) and score "
                       "every judged query in each search mode.")
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--beir", type=Path, metavar="DIR", help="a BEIR task directory (corpus, queries, qrels)")
    source.add_argument("--squad", type=Path, metavar="FILE", help="SQuAD-style JSON, e.g. CMRC 2018")
    source.add_argument("--clapnq", type=Path, metavar="PATH", help="ClapNQ JSONL file or directory")
    source.add_argument("--jsonl", type=Path, metavar="FILE", help="your questions (see eval/README.md)")
    s.add_argument("--docs", type=Path, metavar="DIR", help="with --jsonl: the documents to index")
    s.add_argument("--kb", help="with --jsonl: evaluate an existing knowledge base instead (RAG_DATA_DIR)")
    s.add_argument("--split", default="train", help="BEIR qrels split (default train)")
    s.add_argument("--embedder", choices=["e5", "minilm"], default="e5")
    s.add_argument("--modes", type=_modes, default="bm25,vector,hybrid", help="comma-separated subset of "
                   "bm25,vector,hybrid (default all three)")
    s.add_argument("--k", type=int, default=10, help="extra cut-off reported as ndcg@k, hit@k... (default 10)")
    s.add_argument("--limit", type=_int_at_least(1), metavar="N", help="evaluate the first N judged queries")
    s.add_argument("--corpus-limit", type=_int_at_least(0), metavar="M",
                   help="index only the selected queries' gold documents plus the first M others")
    s.add_argument("--splitter", default="sentence", help="splitter for the index (default sentence)")
    s.add_argument("--chunk-size", type=_int_at_least(1), default=4000, help="default 4000: one chunk per abstract")
    s.add_argument("--chunk-overlap", type=_int_at_least(0), default=0)
    s.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="where indexes are cached (default RAG_EVAL_CACHE, else <RAG_DATA_DIR>/eval-cache)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--json", action="store_true", help="print {mode: {metric: value}}")
    s.set_defaults(func=cmd_eval_retrieval)

