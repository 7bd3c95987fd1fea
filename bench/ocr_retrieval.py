"""Does a scanned copy answer the same retrieval questions as its text? (issue 31: within 0.05 hit@5.)

Target documents are real passages (CMRC 2018 dev paragraphs in Chinese, SciFact abstracts with training claims in
English), each laid out on an A4 page by ``bench/ocr_pages.py``. One knowledge base gets each target as a text file
holding exactly the page's text; the other gets the same page as a scanned PDF (an image at 300 dpi and no text
layer, so the loader reads it by OCR). Both hold the same distractors as text, so a question must find its page among
many. hit@5: the question's own target is among the first five hits (the default hybrid search). Questions whose
answer was cut off the page (a paragraph longer than a page) are left out, on both sides.

    .venv/bin/python bench/ocr_retrieval.py [--targets 20] [--distractors 100] [--variant clean|noisy] [--out r.json]

Needs ../shared/eval-data (CMRC 2018, SciFact) and a CJK font (fonts-noto-cjk).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, str(path))

from ocr_pages import drawable, fit_page, noisy, render_page  # noqa: E402

from rag_service.ingestion.pipeline import Ingestor  # noqa: E402
from rag_service.retrieval.search import Retriever  # noqa: E402
from rag_service.settings import Settings  # noqa: E402
from rag_service.workspace import Workspace  # noqa: E402

DATA = ROOT.parent / "shared" / "eval-data"
DPI = 300


def chinese(targets: int, distractors: int) -> tuple[list[dict[str, Any]], list[str]]:
    """(targets with their page text and questions, distractor texts) from CMRC 2018 dev."""
    data = json.loads((DATA / "cmrc2018" / "squad-style-data" / "cmrc2018_dev.json").read_text(encoding="utf-8"))
    out: list[dict[str, Any]] = []
    others: list[str] = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"].strip()
            if len(out) < targets and drawable(article["title"] + context, "zh"):
                page = fit_page(article["title"], [context], lang="zh")
                questions = [q["question"] for q in paragraph["qas"]
                             if any(a["text"] in page for a in q["answers"])]
                if questions:
                    out.append({"name": f"zh-{len(out):02d}", "lang": "zh", "page": page, "questions": questions})
                    continue
            if len(others) < distractors:
                others.append(f"{article['title']}\n{context}")
    return out, others


def english(targets: int, distractors: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The same from SciFact: abstracts that training claims are judged relevant to, and other abstracts."""
    corpus = {}
    with (DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            corpus[record["_id"]] = record
    queries = {}
    with (DATA / "scifact" / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            queries[record["_id"]] = record["text"]
    by_doc: dict[str, list[str]] = {}
    with (DATA / "scifact" / "qrels" / "train.tsv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["query-id"] in queries:
                by_doc.setdefault(row["corpus-id"], []).append(queries[row["query-id"]])
    out: list[dict[str, Any]] = []
    for doc_id, questions in by_doc.items():
        doc = corpus.get(doc_id)
        if doc is None or not drawable(doc["title"] + doc["text"], "en"):
            continue
        page = fit_page(doc["title"], [doc["text"]], lang="en")
        if len(page) < 0.9 * len(doc["title"] + doc["text"]):  # most of the abstract must be on the page
            continue
        out.append({"name": f"en-{len(out):02d}", "lang": "en", "page": page, "questions": questions})
        if len(out) == targets:
            break
    used = set(by_doc)
    others = [f"{d['title']}\n{d['text']}" for i, d in corpus.items() if i not in used][:distractors]
    return out, others


def build(ws: Workspace, kb: str, targets: list[dict[str, Any]], others: list[str], folder: Path, scanned: bool,
          variant: str) -> float:
    """Write and ingest one KB; returns the seconds spent loading the targets (OCR on the scanned side)."""
    folder.mkdir(parents=True)
    for i, text in enumerate(others):
        (folder / f"other-{i:03d}.txt").write_text(text, encoding="utf-8")
    for n, target in enumerate(targets):
        if scanned:
            image = render_page(target["page"], dpi=DPI, lang=target["lang"])
            if variant == "noisy":
                image = noisy(image, seed=n)
            image.save(folder / f"{target['name']}.pdf", "PDF", resolution=DPI)
        else:
            (folder / f"{target['name']}.txt").write_text(target["page"], encoding="utf-8")
    ingestor, _ = Ingestor.open(ws, kb)
    started = time.perf_counter()
    results = ingestor.run(sorted(folder.iterdir()))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise SystemExit(f"{kb}: {len(failed)} files failed, first: {failed[0].error}")
    return time.perf_counter() - started


def hit_at_5(ws: Workspace, kb: str, targets: list[dict[str, Any]]) -> dict[str, float]:
    retriever = Retriever(ws, ws.catalog.get_kb(kb))
    scores: dict[str, list[int]] = {}
    for target in targets:
        for question in target["questions"]:
            sources = [Path(h.chunk.source).stem for h in retriever.search(question, k=5)]
            scores.setdefault(target["lang"], []).append(int(target["name"] in sources))
    return {lang: sum(v) / len(v) for lang, v in scores.items()} | {
        f"{lang}_questions": len(v) for lang, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=20, help="target pages per language")
    parser.add_argument("--distractors", type=int, default=100, help="distractor documents per language")
    parser.add_argument("--variant", choices=("clean", "noisy"), default="clean", help="the scanned pages' quality")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    zh, zh_others = chinese(args.targets, args.distractors)
    en, en_others = english(args.targets, args.distractors)
    targets, others = zh + en, zh_others + en_others
    report: dict[str, Any] = {"targets": len(targets), "distractors": len(others), "variant": args.variant,
                              "questions": sum(len(t["questions"]) for t in targets)}
    with tempfile.TemporaryDirectory(prefix="ocr-retrieval-") as tmp:
        ws = Workspace(Settings(data_dir=Path(tmp) / "data"))
        for side, scanned in (("text", False), ("scan", True)):
            seconds = build(ws, side, targets, others, Path(tmp) / side, scanned, args.variant)
            report[side] = hit_at_5(ws, side, targets) | {"ingest_s": round(seconds, 1)}
            print(f"{side}: {report[side]}", flush=True)
        ws.close()
    print(f"\n{'':8} {'text':>8} {'scan':>8} {'delta':>8} questions")
    deltas = {}
    for lang in ("zh", "en"):
        delta = report["scan"][lang] - report["text"][lang]
        deltas[lang] = delta
        print(f"hit@5 {lang:3} {report['text'][lang]:8.3f} {report['scan'][lang]:8.3f} {delta:+8.3f} "
              f"{report['text'][f'{lang}_questions']}")
    report["delta"] = deltas
    if args.out:
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"ocr_hit5_delta_zh={deltas['zh']:+.3f} ocr_hit5_delta_en={deltas['en']:+.3f}")


if __name__ == "__main__":
    main()
