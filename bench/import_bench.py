"""``rag import``'s check pass (the whole file read and validated, nothing written) against a bare parse of the same
file (gunzip + ``json.loads`` of every line) in the same run: the ratio is what the checks cost on top of reading.

A generated export of one document with ``--chunks`` chunks (the worst case of a per-document duplicate check) and
of ``--chunks`` chunks spread over documents of 20; tokens included, vectors null (decoding vectors is the same
work with or without the checks). ``--line-mb N``: the peak memory of opening a gzip that inflates to one line of
N MB (the header of a hostile file). Results: docs/benchmarks.md "Import checks".
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import inspect
import json
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from rag_service.admin import transfer
from rag_service.settings import Settings


def write_export(path: Path, chunks: int, per_doc: int) -> None:
    """A valid export: ``chunks`` chunks in documents of ``per_doc`` chunks, each chunk the text at its offsets."""
    text_unit = "Meal allowances are paid monthly. 每月发放餐补。"
    docs = (chunks + per_doc - 1) // per_doc
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as out:
        out.write(json.dumps({"format": transfer.FORMAT, "version": transfer.VERSION, "exported": "2024-01-01",
                              "kb": {"name": "bench", "embedder": "e5", "dim": 384, "splitter": "recursive",
                                     "chunk_size": 400, "chunk_overlap": 0, "chunk_unit": "chars", "options": {}},
                              "documents": docs, "chunks": chunks}) + "\n")
        left = chunks
        for d in range(docs):
            n = min(per_doc, left)
            left -= n
            sha = hashlib.sha256(f"doc {d}".encode()).hexdigest()
            doc_id, source = sha[:16], f"doc-{d}.txt"
            out.write(json.dumps({"type": "document", "id": doc_id, "source": source, "sha256": sha,
                                  "chars": n * len(text_unit), "created": "2024-01-01T00:00:00+00:00"}) + "\n")
            for i in range(n):
                start = i * len(text_unit)
                out.write(json.dumps({"type": "chunk", "id": f"{doc_id}:{i}", "doc_id": doc_id, "source": source,
                                      "position": i, "text": text_unit, "start": start,
                                      "end": start + len(text_unit), "metadata": {"format": "text"},
                                      "tokens": ["meal", "allowances", "paid", "monthly", "餐补"],
                                      "vector": None}, ensure_ascii=False) + "\n")
        out.write(json.dumps({"type": "end", "documents": docs, "chunks": chunks}) + "\n")


def bare_parse(path: Path) -> float:
    started = time.perf_counter()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            json.loads(line)
    return time.perf_counter() - started


def check_pass(path: Path) -> float:
    """The import's check pass (as ``transfer._check`` runs it)."""
    started = time.perf_counter()
    with transfer.ExportReader(*reader_args(path)) as reader:
        for _ in reader.documents():
            pass
    return time.perf_counter() - started


def reader_args(path: Path) -> list[Any]:
    """ExportReader's arguments, on builds before and after it took its limits (for before/after runs)."""
    if "limits" in inspect.signature(transfer.ExportReader).parameters:
        return [path, transfer.ImportLimits.of(Settings())]  # type: ignore[attr-defined]
    return [path]


def huge_line(path: Path, mb: int) -> None:
    """Open a gzip holding one ``mb`` MB line; print the peak of Python allocations and the process's RSS."""
    with gzip.open(path, "wb") as out:
        out.write(b'{"format": "rag-service-kb", "version": 1, "exported": "')
        for _ in range(mb):
            out.write(b"a" * (1 << 20))
    tracemalloc.start()
    try:
        transfer.ExportReader(*reader_args(path)).close()
        error = None
    except Exception as exc:  # the point: how much was read before it failed
        error = str(exc)[:160]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"line_mb": mb, "gzip_mb": round(path.stat().st_size / 2**20, 2),
                      "traced_peak_mb": round(peak / 2**20, 1),
                      "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "error": error},
                     ensure_ascii=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs of each")
    parser.add_argument("--line-mb", type=int, help="instead: the memory of reading one line of this many MB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.line_mb:
            huge_line(Path(tmp) / "line.jsonl.gz", args.line_mb)
            return
        for label, per_doc in (("one document", args.chunks), ("documents of 20", 20)):
            path = Path(tmp) / "bench.jsonl.gz"
            write_export(path, args.chunks, per_doc)
            bare = min(bare_parse(path) for _ in range(args.repeat))
            check = min(check_pass(path) for _ in range(args.repeat))
            print(json.dumps({"chunks": args.chunks, "layout": label, "bare_parse_s": round(bare, 3),
                              "check_pass_s": round(check, 3), "ratio": round(check / bare, 2)}))


if __name__ == "__main__":
    main()
