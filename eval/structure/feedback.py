"""Feedback as a recall signal, measured on the structure benchmark.

Half of the questions (every other one) get an up-voted answer as a user of the console would leave it: asked in
the document's own words (the question line the benchmark question paraphrases), citing the chunk that holds the
gold answer. Then every benchmark question (a paraphrase) is asked, with ``feedback_boost`` off and on; hit@5 is
reported for the rated half (the boost should help) and the unrated half (it must not hurt).

    python eval/structure/feedback.py [--splitter structure] [--similarity 0.92]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run.py beside this file, as heading_study.py imports it
    sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    KB,
    Question,
    evaluate,
    extracted_texts,
    holds_answer,
    ingest,
    load_questions,
)


def rate_half(data_dir: Path, texts: dict[str, str], questions: list[Question]) -> set[str]:
    """Up-votes for every other question, in the document's words, citing a chunk that holds the answer."""
    from rag_service.settings import load_settings
    from rag_service.workspace import Workspace

    ws = Workspace(load_settings(data_dir=data_dir))
    rated: set[str] = set()
    try:
        kb = ws.catalog.get_kb(KB)
        chunks = {r.source: [c for c, tokens in ws.catalog.document_chunks(kb.id, r.id) if tokens is not None]
                  for r in ws.catalog.documents(kb.id, status="ready")}
        for q in questions[::2]:
            holding = [c for c in chunks.get(q.doc, []) if holds_answer(q, c.source, c.start, c.end, c.text)]
            if not holding or not q.line:
                continue
            ws.feedback.add(kb.id, q.line, holding[0].text, "up",
                            citations=[{"chunk_id": holding[0].id, "doc_id": holding[0].doc_id,
                                        "source": holding[0].source}])
            rated.add(q.id)
    finally:
        ws.close()
    return rated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splitter", default="structure")
    parser.add_argument("--similarity", type=float, default=None, help="RAG_FEEDBACK_BOOST_SIMILARITY")
    parser.add_argument("--mode", default="hybrid")
    args = parser.parse_args()
    texts = extracted_texts()
    questions = load_questions(texts)
    with tempfile.TemporaryDirectory(prefix="structure-feedback-") as tmp:
        data_dir = Path(tmp)
        ingest(data_dir, ["--splitter", args.splitter])
        rated = rate_half(data_dir, texts, questions)
        rows = {}
        for boost in ("false", "true"):
            os.environ["RAG_FEEDBACK_BOOST"] = boost
            if args.similarity is not None:
                os.environ["RAG_FEEDBACK_BOOST_SIMILARITY"] = str(args.similarity)
            _, _, results = evaluate(data_dir, texts, questions, [args.mode])
            ranks = results[args.mode]["per_query"]
            for group, members in (("rated", [q for q in questions if q.id in rated]),
                                   ("unrated", [q for q in questions if q.id not in rated])):
                hits = [ranks[q.id]["rank"] is not None and ranks[q.id]["rank"] <= 5 for q in members]
                rows[(boost, group)] = (sum(hits) / len(hits), len(hits))
    print(f"| feedback_boost | rated half hit@5 | unrated half hit@5 |  ({args.mode}, {args.splitter})")
    print("|---|---|---|")
    for boost in ("false", "true"):
        print(f"| {boost} | {rows[(boost, 'rated')][0]:.3f} (n={rows[(boost, 'rated')][1]}) | "
              f"{rows[(boost, 'unrated')][0]:.3f} (n={rows[(boost, 'unrated')][1]}) |")
    print(f"feedback: rated_gain={rows[('true', 'rated')][0] - rows[('false', 'rated')][0]:+.3f} "
          f"unrated_change={rows[('true', 'unrated')][0] - rows[('false', 'unrated')][0]:+.3f}")


if __name__ == "__main__":
    main()
