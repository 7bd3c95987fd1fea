"""What fills the top 10 on RGB: the question's positives, its own hard negatives, or other questions' passages?

    python -m rag_service.eval.rgb_misses [--data ../shared/eval-data/rgb_zh_dev] [--mode hybrid] [--out top10.json]

RGB's ``questions.jsonl`` lists, per question, the passages that state the answer (``positive``) and passages its
authors retrieved for the same question that do not (``negative``: the same event, another date, another number).
Each of the default pipeline's first 10 documents (``Retriever.search`` over the cached ``rag eval retrieval``
index, ranked as that command scores them with ``retrieval.judge``: a chunk that several identical passages
share stands for each) is labelled ``positive``, ``own negative``, ``other's positive`` or ``other's negative``.
Own negatives in the top 10 are what a better ranking of the same candidates would have to push out; telling them
apart takes reading the passage for the answer (a reader or cross-encoder), not a closer topic match.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from rag_service.eval.datasets import load_beir
from rag_service.eval.retrieval import RetrievalConfig, build_index, judge
from rag_service.retrieval.search import Retriever

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "eval-data" / "rgb_zh_dev"
LABELS = ("positive", "own negative", "other's positive", "other's negative")


def label(doc: str, qid: str, positives: dict[str, set[str]], negatives: dict[str, set[str]]) -> str:
    """A passage's relation to question ``qid``; a passage can be listed for several questions."""
    if qid in positives.get(doc, set()):
        return "positive"
    if qid in negatives.get(doc, set()):
        return "own negative"
    return "other's positive" if doc in positives else "other's negative"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="an RGB directory (BEIR layout + questions.jsonl)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--mode", default="hybrid", choices=("bm25", "vector", "hybrid"))
    parser.add_argument("--out", type=Path, help="also write each question's labelled top 10 as JSON")
    args = parser.parse_args(argv)
    questions = [json.loads(line) for line in (args.data / "questions.jsonl").open(encoding="utf-8") if line.strip()]
    positives: dict[str, set[str]] = {}
    negatives: dict[str, set[str]] = {}
    for q in questions:
        for doc in q["positive"]:
            positives.setdefault(doc, set()).add(q["id"])
        for doc in q["negative"]:
            negatives.setdefault(doc, set()).add(q["id"])
    by_id = {q["id"]: q for q in questions}
    dataset = load_beir(args.data, split=args.split)
    index = build_index(dataset, RetrievalConfig(), progress=True)
    counts: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    possible = 0
    try:
        retriever = Retriever(index.ws, index.kb)
        for query in dataset.queries:
            if not query.judged or query.id not in by_id:
                continue
            hits = retriever.search(query.text, k=30, mode=args.mode)
            docs = judge(query, hits, index.aliases)[0][:10]  # documents as rag eval retrieval ranks them
            labels = [label(d, query.id, positives, negatives) for d in docs]
            counts.update(labels)
            possible += min(len(by_id[query.id]["positive"]), 10)
            rows.append({"id": query.id, "query": query.text, "answer": by_id[query.id]["answer"],
                         "top10": [{"doc": d, "label": lab} for d, lab in zip(docs, labels, strict=True)]})
    finally:
        index.ws.close()
    total = sum(counts.values())
    print(f"{args.data.name} ({args.split}), {args.mode}: {len(rows)} questions, {total} top-10 slots; "
          f"{possible} could hold a positive\n")
    print("| label | slots | share |\n|---|---:|---:|")
    for name in LABELS:
        print(f"| {name} | {counts[name]} | {counts[name] / max(total, 1):.1%} |")
    if args.out:
        args.out.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
