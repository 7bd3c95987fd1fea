"""Study: would a third ranked list, each chunk scored by the query's similarity to its heading path alone, help?

    python eval/structure/heading_study.py --data-dir DIR   # DIR: a data dir where run.py --data-dir built the KB

For every benchmark question it takes the real BM25 and vector candidate lists (``Retriever.candidate_lists``, 30
deep), adds a ``head`` list (the KB's embedder; each chunk's heading path, or only its last heading, embedded as a
passage or as a query), fuses them with ``weighted_fusion`` at several weights and prints hybrid hit@5 by the
benchmark's hit rule. Measured 2026-12-02 (eval/README, "Structure benchmark"): not adopted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

from rag_service.models.registry import force_offline  # noqa: E402
from rag_service.records import Chunk  # noqa: E402
from rag_service.retrieval.fusion import weighted_fusion  # noqa: E402
from rag_service.retrieval.search import Retriever  # noqa: E402
from rag_service.settings import load_settings  # noqa: E402
from rag_service.workspace import Workspace  # noqa: E402

DEPTH = 30
VARIANTS: dict[str, Callable[[Chunk], str]] = {
    "last heading": lambda c: c.metadata["headings"][-1],
    "heading path": lambda c: " > ".join(c.metadata["headings"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--bm25-weight", type=float, default=0.3, help="the KB language's default (zh: 0.3)")
    args = parser.parse_args()
    force_offline()
    texts = bench.extracted_texts()
    questions = bench.load_questions(texts)
    ws = Workspace(load_settings(data_dir=args.data_dir))
    try:
        kb = ws.catalog.get_kb(bench.KB)
        chunks = {c.id: c for record in ws.catalog.documents(kb.id, status="ready")
                  for c, tokens in ws.catalog.document_chunks(kb.id, record.id) if tokens is not None}
        retriever = Retriever(ws, kb)
        embedder = retriever.embedder
        headed = [cid for cid, c in chunks.items() if c.metadata.get("headings")]
        matrices: dict[str, np.ndarray] = {}
        for name, text_of in VARIANTS.items():
            strings = [text_of(chunks[cid]) for cid in headed]
            unique = sorted(set(strings))
            as_passage = dict(zip(unique, np.asarray(embedder.embed_documents(unique)), strict=True))
            as_query = {s: np.asarray(embedder.embed_query(s)) for s in unique}
            matrices[f"{name}, passage"] = np.array([as_passage[s] for s in strings])
            matrices[f"{name}, query"] = np.array([as_query[s] for s in strings])

        def hit5(fused: list[tuple[str, float]], q: bench.Question) -> bool:
            return any(bench.holds_answer(q, chunks[cid].source, chunks[cid].start, chunks[cid].end,
                                          chunks[cid].text) for cid, _ in fused[:5])

        rows = []
        for q in questions:
            lists = retriever.candidate_lists(q.text, DEPTH)
            vector = np.asarray(embedder.embed_query(q.text))
            heads = {}
            for name, matrix in matrices.items():
                sims = matrix @ vector
                heads[name] = [(headed[j], float(sims[j])) for j in np.argsort(-sims)[:DEPTH]]
            rows.append((q, lists, heads))
        w = args.bm25_weight
        base = sum(hit5(weighted_fusion(lists, {"bm25": w, "vector": 1 - w}), q) for q, lists, _ in rows)
        print(f"{len(headed)} of {len(chunks)} chunks have a heading path; bm25 weight {w}")
        print(f"hybrid hit@5 without a heading list: {base / len(rows):.3f}")
        print("| heading list | alone | " + " | ".join(f"weight {h}" for h in (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)) + " |")
        for name in matrices:
            alone = sum(hit5(heads[name], q) for q, _, heads in rows) / len(rows)
            cells = [sum(hit5(weighted_fusion({**lists, "head": heads[name]},
                                              {"bm25": w, "vector": 1 - w, "head": h}), q)
                         for q, lists, heads in rows) / len(rows) for h in (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)]
            print(f"| {name} | {alone:.3f} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    finally:
        ws.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
