"""Ingestion throughput: the whole pipeline against the raw embedder on the same chunks.

Generates a mixed Chinese/English corpus (default ~2 MB of UTF-8), ingests it into a fresh data dir
with the default embedder, then embeds the very same chunk texts with ``embed_documents`` alone.
Embedding should dominate: target pipeline rate >= 0.8x the raw rate.

    .venv/bin/python bench/ingest_bench.py [--size-mb 2] [--files 40]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from ingest.pipeline import Ingestor
from rag_service.models import force_offline
from rag_service.settings import Settings
from rag_service.workspace import Workspace

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


def paragraph(rng: random.Random, zh: bool) -> str:
    if zh:
        return "".join(f"{rng.choice(ZH_SUBJECTS)}{rng.choice(ZH_VERBS)}{rng.choice(ZH_OBJECTS)}。"
                       for _ in range(rng.randint(3, 7)))
    return " ".join(f"{rng.choice(EN_SUBJECTS)} {rng.choice(EN_VERBS)} {rng.choice(EN_OBJECTS)}."
                    for _ in range(rng.randint(3, 7)))


def make_corpus(root: Path, size_mb: float, files: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    per_file = int(size_mb * 1024 * 1024 / files)
    total = 0
    for i in range(files):
        parts: list[str] = []
        size = 0
        while size < per_file:
            p = paragraph(rng, zh=i % 2 == 1)
            parts.append(p)
            size += len(p.encode("utf-8")) + 2
        text = "\n\n".join(parts)
        (root / f"doc{i:03d}.{'md' if i % 3 == 0 else 'txt'}").write_text(text, encoding="utf-8")
        total += len(text.encode("utf-8"))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=2.0)
    ap.add_argument("--files", type=int, default=40)
    args = ap.parse_args()
    force_offline()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        nbytes = make_corpus(corpus, args.size_mb, args.files)
        ws = Workspace(Settings(data_dir=Path(tmp) / "data"))
        ingestor, _ = Ingestor.open(ws, "bench")
        ingestor.embedder.embed_documents(["warm up"])

        t0 = time.perf_counter()
        results = ingestor.run([corpus])
        pipeline_s = time.perf_counter() - t0
        failed = [r for r in results if r.status == "failed"]
        if failed:
            raise SystemExit(f"bench ingest failed: {failed[0].error}")

        chunks = [c for d in ws.catalog.documents(ingestor.kb.id)
                  for c in ws.catalog.ready_chunks(ingestor.kb.id, ws.catalog.chunk_ids(ingestor.kb.id, d.id)).values()]
        texts = [c.index_text for c in chunks]
        batch = ws.settings.embed_batch_size
        t1 = time.perf_counter()
        for start in range(0, len(texts), batch):
            ingestor.embedder.embed_documents(texts[start:start + batch])
        raw_s = time.perf_counter() - t1

    pipeline_rate = len(texts) / pipeline_s
    raw_rate = len(texts) / raw_s
    print(f"corpus: {nbytes / 1e6:.2f} MB in {args.files} files, {len(texts)} chunks "
          f"(embedder {ingestor.embedder.name}, {ingestor.kb.splitter} {ingestor.kb.chunk_size}/"
          f"{ingestor.kb.chunk_overlap} {ingestor.kb.chunk_unit})")
    print(f"pipeline: {pipeline_s:.1f} s, {pipeline_rate:.2f} chunks/s")
    print(f"raw embed_documents: {raw_s:.1f} s, {raw_rate:.2f} chunks/s")
    print(f"pipeline_chunks_per_s={pipeline_rate:.2f} raw_chunks_per_s={raw_rate:.2f} "
          f"ratio={pipeline_rate / raw_rate:.3f} (target >= 0.8)")


if __name__ == "__main__":
    main()
