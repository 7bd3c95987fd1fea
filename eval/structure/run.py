"""Structure benchmark: does retrieval find the passage holding the answer in messy FAQ documents?

    python eval/structure/run.py                                   # the KB defaults (RAG_SPLITTER, RAG_CHUNK_SIZE, ...)
    python eval/structure/run.py --splitter sentence --chunk-size 800
    python eval/structure/run.py --modes hybrid --out /tmp/structure.json

The documents of ``docs/`` are ingested by the real CLI (``rag ingest --kb structure <docs>``) into a fresh data
directory (a temporary one unless ``--data-dir`` names one; an existing ``structure`` KB there is reused as is), then
every question of ``questions.jsonl`` is searched in-process with ``Retriever.search`` in each mode, 10 deep.

**Hit rule.** A retrieved chunk holds the answer when it comes from the question's document and covers at least
half of the characters of the gold span (chunk offsets ``[start, end)`` against the span's offset in the extracted
document text; a chunk containing the whole span always counts), or, as a fallback for chunks without usable
offsets, when its text contains the whole span (case and whitespace ignored). hit@k: one of the first k chunks
holds the answer (chunks are ranked as returned, not merged per document); MRR@10 uses the first such chunk.

Prints a Markdown table per mode: all questions, by question language (``zh``, ``en``), ``split`` (no indexed chunk
holds both the answer, by the rule above, and the whole question line the question paraphrases, in its text or in
the heading path it is indexed with: the chunking cut them apart) against ``intact``, and by where the answer sits
(``kind:list`` an answer item, ``kind:prose``, ``kind:table``). It ends with ``structure: hybrid_hit5=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag_service.retrieval.expansion import Expand
    from rag_service.retrieval.search import Mode

HERE = Path(__file__).resolve().parent
DOCS = HERE / "docs"
QUESTIONS = HERE / "questions.jsonl"
KB = "structure"
DEPTH = 10
CUTOFFS = (1, 5, 10)


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    doc: str  # source name as ``rag ingest`` gives it: docs/<file>
    lang: str
    kind: str
    text: str
    span: str
    start: int  # offset of the span in the document's extracted text
    end: int
    line: str  # the document's question line this question paraphrases
    line_start: int  # its offset: the last occurrence before the span (-1: none)


def _squash(text: str) -> str:
    return " ".join(text.split()).casefold()


def load_questions(texts: dict[str, str]) -> list[Question]:
    """The question file, each gold span located in its document's extracted text (it must occur there)."""
    questions = []
    for lineno, line in enumerate(QUESTIONS.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row: dict[str, Any] = json.loads(line)
        doc, span = row["doc"], row["gold_substrings"][0]
        if doc not in texts:
            raise SystemExit(f"{QUESTIONS.name}:{lineno}: unknown document {doc}")
        at = texts[doc].find(span)
        if at < 0:
            raise SystemExit(f"{QUESTIONS.name}:{lineno}: gold span not in {doc}: {span!r} (run build.py --check)")
        line = row.get("question_line", "")
        questions.append(Question(row["id"], doc, row["lang"], row.get("kind", ""), row["question"], span, at,
                                  at + len(span), line, texts[doc].rfind(line, 0, at) if line else -1))
    return questions


def extracted_texts() -> dict[str, str]:
    """Source name -> text, through the same discovery and loaders as ``rag ingest``."""
    from rag_service.ingestion.loaders import load
    from rag_service.ingestion.pipeline import discover

    return {source: load(file, source, file.read_bytes()).text for file, source in discover([DOCS])}


def holds_answer(question: Question, source: str, start: int, end: int, text: str) -> bool:
    """The hit rule of the module docstring."""
    if source != question.doc:
        return False
    if 0 <= start < end:
        covered = min(end, question.end) - max(start, question.start)
        if 2 * covered >= question.end - question.start:
            return True
    return _squash(question.span) in _squash(text)


def rag(data_dir: Path, *args: str) -> str:
    """``rag ARGS`` with ``RAG_DATA_DIR=data_dir``, in a child process (the real CLI); its standard output."""
    exe = Path(sys.executable).with_name("rag")
    command = [str(exe) if exe.exists() else "rag", *args]
    print(f"$ RAG_DATA_DIR={data_dir} rag {' '.join(args)}", file=sys.stderr)
    done = subprocess.run(command, env={**os.environ, "RAG_DATA_DIR": str(data_dir)}, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"rag {' '.join(args[:2])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def ingest(data_dir: Path, options: Sequence[str]) -> None:
    """``rag ingest --kb structure docs/`` into ``data_dir``."""
    rag(data_dir, "ingest", "--kb", KB, *options, str(DOCS))


def has_kb(data_dir: Path) -> bool:
    """Whether ``data_dir`` already holds the benchmark's knowledge base."""
    from rag_service.settings import load_settings
    from rag_service.workspace import Workspace

    if not data_dir.is_dir() or not any(data_dir.iterdir()):
        return False
    ws = Workspace(load_settings(data_dir=data_dir))
    try:
        return ws.catalog.find_kb(KB) is not None
    finally:
        ws.close()


def evaluate(data_dir: Path, texts: dict[str, str], questions: list[Question],
             modes: Sequence[Mode], expand: Expand | None = None,
             ) -> tuple[dict[str, Any], dict[str, bool], dict[str, Any]]:
    """(index description, question id -> whether the chunking split the answer from its question line,
    per-mode per-question first relevant rank and top-5 chunk offsets)."""
    from rag_service.models.registry import force_offline
    from rag_service.retrieval.search import Retriever
    from rag_service.settings import load_settings
    from rag_service.workspace import Workspace

    force_offline()
    ws = Workspace(load_settings(data_dir=data_dir))
    try:
        kb = ws.catalog.get_kb(KB)
        records = ws.catalog.documents(kb.id, status="ready")
        index = {"splitter": kb.splitter, "chunk_size": kb.chunk_size, "chunk_overlap": kb.chunk_overlap,
                 "chunk_unit": kb.chunk_unit, "embedder": kb.embedder, "documents": len(records),
                 "chunks": sum(r.chunks for r in records)}
        spans: dict[str, list[tuple[int, int, str]]] = {}
        headed: dict[str, list[tuple[int, int, list[str]]]] = {}  # each chunk's heading path (structure, markdown)
        for record in records:  # the indexed chunks (parents kept for context only are not searched)
            spans[record.source] = [(c.start, c.end, c.text)
                                    for c, tokens in ws.catalog.document_chunks(kb.id, record.id) if tokens is not None]
            headed[record.source] = [(c.start, c.end, [_squash(h) for h in c.metadata.get("headings") or ()])
                                     for c, tokens in ws.catalog.document_chunks(kb.id, record.id)
                                     if tokens is not None]
        # Offsets are trusted only where every indexed chunk is the slice of the text extracted here that its
        # offsets name (the index was built from the same loader output); elsewhere containment alone decides.
        trusted = {source for source, chunks in spans.items()
                   if all(texts.get(source, "")[start:end] == text for start, end, text in chunks)}
        for source in sorted(set(spans) - trusted):
            print(f"warning: {source}: chunk offsets do not match the extracted text; judged by containment only",
                  file=sys.stderr)

        def judge(q: Question, source: str, start: int, end: int, text: str) -> bool:
            return holds_answer(q, source, *((start, end) if source in trusted else (-1, -1)), text)

        def keeps_line(q: Question, start: int, end: int, headings: list[str]) -> bool:
            """The chunk holds the question line in its text, or in the heading path it is indexed (and packed)
            with."""
            line = _squash(q.line)
            return (start <= q.line_start and q.line_start + len(q.line) <= end) or any(
                len(h) >= 4 and (h in line or line in h) for h in headings)

        split = {q.id: q.line_start >= 0 and not any(
            judge(q, q.doc, start, end, text) and keeps_line(q, start, end, headings)
            for (start, end, text), (_, _, headings) in zip(spans.get(q.doc, []), headed.get(q.doc, []), strict=True))
            for q in questions}
        retriever = Retriever(ws, kb)
        results: dict[str, Any] = {}
        for mode in modes:
            retriever.search("warm up", k=1, mode=mode)
            per_query: dict[str, Any] = {}
            started = time.perf_counter()
            for q in questions:
                hits = retriever.search(q.text, k=DEPTH, mode=mode, expand=expand)
                ranks = [n for n, hit in enumerate(hits, start=1)
                         if judge(q, hit.chunk.source, hit.chunk.start, hit.chunk.end, hit.chunk.text)]
                per_query[q.id] = {"rank": ranks[0] if ranks else None,
                                   "top5": [[h.chunk.source, h.chunk.start, h.chunk.end] for h in hits[:5]]}
            results[mode] = {"per_query": per_query,
                             "latency_ms": 1000 * (time.perf_counter() - started) / max(len(questions), 1)}
        return index, split, results
    finally:
        ws.close()


def scores(ranks: list[int | None]) -> dict[str, float]:
    n = max(len(ranks), 1)
    out = {f"hit@{k}": sum(r is not None and r <= k for r in ranks) / n for k in CUTOFFS}
    out["mrr@10"] = sum(1 / r for r in ranks if r is not None) / n
    return out


def table(questions: list[Question], split: dict[str, bool],
          results: dict[str, Any]) -> tuple[str, dict[str, dict[str, dict[str, float]]]]:
    """The Markdown table and the numbers in it: mode -> group (all, zh, en, split, intact, kind:...) -> metric."""
    groups: dict[str, list[Question]] = {"all": questions}
    for lang in sorted({q.lang for q in questions}, reverse=True):
        groups[lang] = [q for q in questions if q.lang == lang]
    groups["split"] = [q for q in questions if split[q.id]]
    groups["intact"] = [q for q in questions if not split[q.id]]
    for kind in sorted({q.kind for q in questions if q.kind}):
        groups[f"kind:{kind}"] = [q for q in questions if q.kind == kind]
    numbers: dict[str, dict[str, dict[str, float]]] = {}
    lines = ["| mode | questions | n | hit@1 | hit@5 | hit@10 | MRR@10 |", "|---|---|---:|---:|---:|---:|---:|"]
    for mode, result in results.items():
        numbers[mode] = {}
        for name, members in groups.items():
            s = scores([result["per_query"][q.id]["rank"] for q in members])
            numbers[mode][name] = s
            lines.append(f"| {mode} | {name} | {len(members)} | {s['hit@1']:.3f} | {s['hit@5']:.3f} | "
                         f"{s['hit@10']:.3f} | {s['mrr@10']:.3f} |")
    return "\n".join(lines), numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splitter", help="passed to rag ingest (default: the KB default, RAG_SPLITTER)")
    parser.add_argument("--chunk-size", type=int, help="passed to rag ingest")
    parser.add_argument("--chunk-overlap", type=int, help="passed to rag ingest")
    parser.add_argument("--modes", default="bm25,vector,hybrid", help="comma-separated search modes")
    parser.add_argument("--data-dir", type=Path,
                        help="keep the index here (reused when it already holds the 'structure' KB); "
                             "default: a temporary directory, removed afterwards")
    parser.add_argument("--out", type=Path, help="also write the index settings, numbers and per-question ranks "
                                                 "as JSON")
    parser.add_argument("--expand", choices=["multi", "hyde"], help="also expand each query with the LLM "
                        "(rag search --expand): paraphrases or a hypothetical passage")
    parser.add_argument("--glossary", type=Path, help="add this glossary file to the KB before searching "
                                                      "(e.g. eval/structure/glossary.txt)")
    parser.add_argument("--glossary-suggest", action="store_true", help="accept every glossary suggestion mined "
                        "from the documents (rag glossary suggest --accept) before searching")
    args = parser.parse_args()
    options: list[str] = []
    for flag, value in (("--splitter", args.splitter), ("--chunk-size", args.chunk_size),
                        ("--chunk-overlap", args.chunk_overlap)):
        if value is not None:
            options += [flag, str(value)]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    texts = extracted_texts()
    questions = load_questions(texts)
    with tempfile.TemporaryDirectory(prefix="structure-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        if args.data_dir is None or not has_kb(data_dir):
            ingest(data_dir, options)
        elif options:
            print(f"{data_dir} already holds the '{KB}' KB: ingest skipped, {' '.join(options)} ignored",
                  file=sys.stderr)
        if args.glossary:  # a user's domain glossary for the KB
            rag(data_dir, "glossary", "add", "--kb", KB, "--file", str(args.glossary))
        if args.glossary_suggest:  # the pairs the documents write out, accepted unread
            print(rag(data_dir, "glossary", "suggest", "--kb", KB, "--accept"), file=sys.stderr)
        index, split, results = evaluate(data_dir, texts, questions, modes, args.expand)
    markdown, numbers = table(questions, split, results)
    print(f"index: {', '.join(f'{k}={v}' for k, v in index.items())}" + (f"; queries expanded: {args.expand}"
                                                                          if args.expand else ""))
    by_lang = ", ".join(f"{lang} {sum(q.lang == lang for q in questions)}" for lang in ("zh", "en"))
    print(f"questions: {len(questions)} ({by_lang})")
    print()
    print(markdown)
    print()
    if args.out:
        payload = {"index": index, "scores": numbers, "split": split,
                   "questions": {mode: r["per_query"] for mode, r in results.items()},
                   "latency_ms": {mode: r["latency_ms"] for mode, r in results.items()}}
        args.out.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    headline = numbers.get("hybrid", next(iter(numbers.values())))["all"]["hit@5"]
    print(f"structure: {'hybrid' if 'hybrid' in numbers else modes[0]}_hit5={headline:.3f}")


if __name__ == "__main__":
    main()
