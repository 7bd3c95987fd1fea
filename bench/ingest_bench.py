"""Ingestion throughput (issue 16, item 2): the whole pipeline against the raw embedder on the same chunks, for e5 on
Chinese and English chunks and MiniLM on English, on an idle machine and with one core kept busy by another process;
the raw engine by batch size; e5 by OpenMP thread count.

    PYTHONPATH=. .venv/bin/python bench/ingest_bench.py [--chunks 120] [--batches 8,16,32,64] [--out FILE]
    PYTHONPATH=. .venv/bin/python bench/ingest_bench.py --cell e5,zh   # one measurement, in this process

Every cell runs in a fresh child process, because OpenMP reads its thread count and wait policy once, when the
engine loads (``RAG_EMBED_THREADS`` is applied when ``rag_service`` is imported). A cell builds a synthetic corpus
of the asked language (``--files`` plain-text and Markdown files), ingests it with ``Ingestor.run`` into a fresh data
dir (the default splitter and chunk size), then embeds the very same ``index_text``s with ``embed_documents`` alone,
batch by batch, at each batch size. "Loaded" runs one busy-looping process at normal priority beside the cell for
its whole duration (half of this 2-core machine). Rates are chunks/s and embedder tokens/s (the embedder's own
tokenizer). The final line is ``pipeline_ratio=<worst pipeline/raw over the cells>`` (target >= 0.8: embedding must
dominate everything else the pipeline does).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EN_SUBJECTS = ["The pump station", "The night crew", "Our travel policy", "The research team", "The city library",
               "The billing system", "A field engineer", "The safety board", "The harvest plan", "The archive"]
EN_VERBS = ["inspects", "documents", "replaces", "reviews", "schedules", "approves", "measures", "reports"]
EN_OBJECTS = ["pressure sensors every Tuesday", "the quarterly budget in detail", "worn valves before winter",
              "meal allowances for long trips", "the borrowing rules for members", "solar drying rooms",
              "access badges for the test arena", "the tasting notes of five teas"]
ZH_SUBJECTS = ["图书馆", "维修小组", "财务部门", "研究团队", "烘焙坊", "安全委员会", "档案室", "客服中心"]
ZH_VERBS = ["每周检查", "负责记录", "定期更换", "仔细审核", "提前安排", "统一管理", "认真测量", "按时上报"]
ZH_OBJECTS = ["压力传感器和阀门", "季度预算的执行情况", "读者的借阅记录", "出差人员的餐费补贴", "咖啡豆的烘焙温度",
              "自习室的预约情况", "设备的维护计划", "新员工的安全培训"]

# (label, embedder, language, load, RAG_EMBED_THREADS or None, batch sweep): the matrix the default run measures.
CELLS: list[tuple[str, str, str, bool, int | None, bool]] = [
    ("e5 zh idle", "e5", "zh", False, None, True),
    ("e5 en idle", "e5", "en", False, None, True),
    ("minilm en idle", "minilm", "en", False, None, True),
    ("e5 zh, 1 thread", "e5", "zh", False, 1, False),
    ("e5 zh loaded", "e5", "zh", True, None, False),
    ("e5 en loaded", "e5", "en", True, None, False),
    ("minilm en loaded", "minilm", "en", True, None, False),
]


def paragraph(rng: random.Random, zh: bool) -> str:
    if zh:
        return "".join(f"{rng.choice(ZH_SUBJECTS)}{rng.choice(ZH_VERBS)}{rng.choice(ZH_OBJECTS)}。"
                       for _ in range(rng.randint(3, 7)))
    return " ".join(f"{rng.choice(EN_SUBJECTS)} {rng.choice(EN_VERBS)} {rng.choice(EN_OBJECTS)}."
                    for _ in range(rng.randint(3, 7)))


def make_corpus(root: Path, chars: int, files: int, language: str, seed: int = 7) -> int:
    """``files`` files of about ``chars`` characters in all, in one language; returns the bytes written."""
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        parts: list[str] = []
        size = 0
        while size < chars // files:
            parts.append(paragraph(rng, zh=language == "zh"))
            size += len(parts[-1]) + 2
        text = "\n\n".join(parts)
        (root / f"doc{i:03d}.{'md' if i % 3 == 0 else 'txt'}").write_text(text, encoding="utf-8")
        total += len(text.encode("utf-8"))
    return total


def run_cell(embedder: str, language: str, chunks: int, files: int, batches: list[int]) -> dict[str, Any]:
    """One measurement in this process: pipeline ingest, then the raw embedder on the same texts."""
    from rag_service.ingestion.pipeline import Ingestor
    from rag_service.models.registry import force_offline
    from rag_service.settings import Settings
    from rag_service.workspace import Workspace

    force_offline()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", embedder=embedder)
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        step = settings.chunk_size - settings.chunk_overlap
        nbytes = make_corpus(corpus, chunks * step, files, language)
        ws = Workspace(settings)
        try:
            ingestor, _ = Ingestor.open(ws, "bench")
            ingestor.embedder.embed_documents(["warm up"])
            ws.vectors.count(ingestor.kb.collection)  # Chroma's import (~1.7 s) is paid once per process, not per file
            started = time.perf_counter()
            results = ingestor.run([corpus])
            pipeline_s = time.perf_counter() - started
            failed = [r for r in results if r.status == "failed"]
            if failed:
                raise SystemExit(f"bench ingest failed: {failed[0].error}")
            kb = ingestor.kb
            texts = [c.index_text for d in ws.catalog.documents(kb.id)
                     for c in ws.catalog.ready_chunks(kb.id, ws.catalog.chunk_ids(kb.id, d.id)).values()]
            tokens = sum(ingestor.embedder.count_tokens(t) for t in texts)
            default = settings.embed_batch_size or ingestor.embedder.batch_size  # what the pipeline used
            raw: dict[str, float] = {}
            for batch in sorted({*batches, default}):
                started = time.perf_counter()
                for start in range(0, len(texts), batch):
                    ingestor.embedder.embed_documents(texts[start:start + batch])
                raw[str(batch)] = time.perf_counter() - started
        finally:
            ws.close()
    return {"embedder": embedder, "language": language, "files": files, "bytes": nbytes, "chunks": len(texts),
            "tokens": tokens, "pipeline_s": round(pipeline_s, 2), "raw_s": {b: round(s, 2) for b, s in raw.items()},
            "default_batch": default, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "pipeline_chunks_per_s": round(len(texts) / pipeline_s, 2),
            "raw_chunks_per_s": round(len(texts) / raw[str(default)], 2)}


def busy_loop() -> subprocess.Popen[bytes]:
    """Another process that keeps one core busy (pure Python, normal priority) for as long as it lives."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=120, help="about this many chunks per cell")
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--batches", default="8,16,32,64", help="raw embedder batch sizes (idle cells; every cell also "
                    "measures the pipeline's own: RAG_EMBED_BATCH_SIZE, else the embedder's default)")
    ap.add_argument("--cells", help="only these cells, by label, separated by ';' (e.g. 'e5 zh idle;minilm en idle')")
    ap.add_argument("--cell", help=argparse.SUPPRESS)  # internal: "embedder,language"
    ap.add_argument("--out", type=Path, help="also write every cell as JSON")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",") if b.strip()]

    if args.cell:
        embedder, language = args.cell.split(",")
        print(json.dumps(run_cell(embedder, language, args.chunks, args.files, batches)))
        return

    wanted = None if not args.cells else {c.strip() for c in args.cells.split(";")}
    rows: list[dict[str, Any]] = []
    for label, embedder, language, loaded, threads, sweep in CELLS:
        if wanted is not None and label not in wanted:
            continue
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("OMP_NUM_THREADS", None)
        if threads is not None:
            env["RAG_EMBED_THREADS"] = str(threads)
        cell_batches = batches if sweep else []  # a cell always measures the batch size the pipeline used too
        hog = busy_loop() if loaded else None
        try:
            out = subprocess.run([sys.executable, __file__, "--cell", f"{embedder},{language}", "--chunks",
                                  str(args.chunks), "--files", str(args.files), "--batches",
                                  ",".join(map(str, cell_batches))], env=env, capture_output=True, text=True,
                                 check=False)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        if out.returncode != 0:
            raise SystemExit(f"{label}: cell failed\n{out.stderr[-3000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1]) | {"label": label, "loaded": loaded}
        rows.append(row)
        raw_rates = {b: row["chunks"] / s for b, s in row["raw_s"].items()}
        print(f"{label:<18} {row['chunks']} chunks, {row['tokens'] / row['chunks']:.0f} tokens/chunk: pipeline "
              f"{row['pipeline_chunks_per_s']:.2f} chunks/s; raw by batch "
              + ", ".join(f"{b}: {r:.2f}" for b, r in raw_rates.items()), flush=True)

    print("\n| cell | chunks | batch | pipeline chunks/s | pipeline tokens/s | raw chunks/s | raw tokens/s | "
          "pipeline / raw |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for row in rows:
        raw_s = row["raw_s"][str(row["default_batch"])]  # the raw engine at the pipeline's batch size
        ratio = row["pipeline_chunks_per_s"] / (row["chunks"] / raw_s)
        ratios.append(ratio)
        print(f"| {row['label']} | {row['chunks']} | {row['default_batch']} | {row['pipeline_chunks_per_s']:.2f} | "
              f"{row['tokens'] / row['pipeline_s']:.0f} | {row['chunks'] / raw_s:.2f} | {row['tokens'] / raw_s:.0f} | "
              f"{ratio:.2f} |")
    sweeps = [r for r in rows if len(r["raw_s"]) > 2]
    if sweeps:
        sizes = sorted({int(b) for r in sweeps for b in r["raw_s"]})
        print("\nraw chunks/s by batch size (idle):\n| cell | " + " | ".join(map(str, sizes)) + " |\n|---|"
              + "---:|" * len(sizes))
        for row in sweeps:
            print(f"| {row['label']} | " + " | ".join(
                f"{row['chunks'] / row['raw_s'][str(b)]:.2f}" if str(b) in row["raw_s"] else "" for b in sizes) + " |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    if ratios:
        print(f"\npipeline_ratio={min(ratios):.3f} (worst cell; median {statistics.median(ratios):.3f}; "
              "target >= 0.8)")


if __name__ == "__main__":
    main()
