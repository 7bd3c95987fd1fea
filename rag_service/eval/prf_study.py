"""Pseudo-relevance feedback study on a BEIR data set: does moving the query vector towards the first results help?

    python -m rag_service.eval.prf_study --beir ../shared/eval-data/rgb_zh_dev --split dev

Rocchio feedback in the embedding space: ``q' = q + beta * mean(v_1..v_k)`` over the chunk vectors of the first
``k`` results of the pipeline's own fused list (weighted fusion at the KB language's BM25 weight), normalised;
then every candidate of the BM25 and vector lists (100 deep each, from ``Retriever.candidate_lists`` over the
cached ``rag eval retrieval`` index) is scored by ``q' . v`` and fused with BM25 again. News questions whose
positives are several reports of one event are where feedback should pay; abstracts with one positive where it
should not: run it on both. The study has no coherence floor; the product's gated feedback
(``Retriever.run``, ``RAG_PSEUDO_FEEDBACK*``) is measured with ``rag eval retrieval`` (docs/evaluation.md
"Pseudo-relevance feedback").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rag_service.eval.datasets import load_beir
from rag_service.eval.fusion_study import per_document
from rag_service.eval.metrics import mean, ndcg_at_k, recall_at_k
from rag_service.eval.retrieval import RetrievalConfig, build_index
from rag_service.retrieval.fusion import defaults_for, weighted_fusion
from rag_service.retrieval.search import Retriever

DEPTH = 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beir", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--weight", type=float, help="BM25 weight (default: the KB language's)")
    args = parser.parse_args(argv)
    dataset = load_beir(args.beir, split=args.split)
    index = build_index(dataset, RetrievalConfig(), progress=True)
    ws, kb = index.ws, index.kb
    w = args.weight if args.weight is not None else defaults_for(ws.catalog.kb_language(kb)).bm25_weight
    retriever = Retriever(ws, kb)
    material = []
    try:
        for query in dataset.queries:
            if not query.judged:
                continue
            found = retriever.candidate_lists(query.text, DEPTH)
            ids = list(dict.fromkeys(c for lst in found.values() for c, _ in lst))
            chunks = ws.catalog.ready_chunks(kb.id, ids)
            source = {c: chunks[c].source for c in ids if c in chunks}
            vecs = ws.vectors.vectors(kb.collection, ids)
            material.append((query, found, source, vecs, retriever.embedder.embed_query(query.text)))
    finally:
        ws.close()

    def run(k: int, beta: float, feedback_from: str) -> tuple[float, float]:
        ndcgs, recalls = [], []
        for query, found, source, vecs, qv in material:
            fused = weighted_fusion(found, {"bm25": w, "vector": 1 - w})
            if k and beta:
                base = found["vector"] if feedback_from == "vector" else fused
                top = [c for c, _ in base[:k] if c in vecs]
                q2 = qv + beta * np.mean([vecs[c] for c in top], axis=0)
                q2 /= np.linalg.norm(q2)
                pool = [c for c in vecs]
                rescored = sorted(((c, float(vecs[c] @ q2)) for c in pool), key=lambda x: -x[1])[:DEPTH]
                fused = weighted_fusion({"bm25": found["bm25"], "vector": rescored}, {"bm25": w, "vector": 1 - w})
            ranked = [d for d, _ in per_document([(source[c], s) for c, s in fused if c in source])]
            ndcgs.append(ndcg_at_k(ranked, query.gold, 10))
            recalls.append(recall_at_k(ranked, query.gold, 10))
        return mean(ndcgs), mean(recalls)

    print(f"{args.beir.name} ({args.split}): {len(material)} judged queries, bm25 weight {w}\n")
    print("| feedback | k | beta | nDCG@10 | Recall@10 |\n|---|---:|---:|---:|---:|")
    n, r = run(0, 0, "fused")
    print(f"| none | | | {n:.4f} | {r:.4f} |")
    for src in ("fused", "vector"):
        for k in (1, 3, 5, 10):
            for beta in (0.25, 0.5, 1.0, 2.0):
                n, r = run(k, beta, src)
                print(f"| {src} | {k} | {beta} | {n:.4f} | {r:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
