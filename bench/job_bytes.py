"""How large the SQLite catalog grows while upload jobs come and go: jobs of one ``--mb`` MB file are created,
claimed and ended (failed, as when their KB was deleted first) one after another, then a backlog of ``--backlog``
jobs queued together; the file size and its free pages are printed along the way. With the bytes of every ended job
dropped, the file stays at the largest backlog and the freed pages are reused (before issue 29 a failed job kept its
bytes: 20 such jobs of 10 MB left a 200 MB file).

    .venv/bin/python bench/job_bytes.py [--jobs 20] [--mb 10] [--backlog 3]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
from pathlib import Path

from rag_service.settings import Settings
from rag_service.storage.jobs import UploadedFile
from rag_service.workspace import Workspace


def report(db: Path, label: str) -> None:
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # count the pages in the file, not in the WAL
        free, pages = (c.execute(f"PRAGMA {p}").fetchone()[0] for p in ("freelist_count", "page_count"))
    print(f"{label}: catalog.sqlite3 {db.stat().st_size / 2**20:6.1f} MB, {free:,} of {pages:,} pages free")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--mb", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="job-bytes-") as tmp:
        root = Path(tmp)
        upload = root / "upload.bin"
        upload.write_bytes(os.urandom(args.mb << 20))
        file = UploadedFile(upload, "upload.bin", "0" * 64, args.mb << 20)
        ws = Workspace(Settings(data_dir=root / "data"))
        db = root / "data" / "catalog.sqlite3"
        for n in range(1, args.jobs + 1):
            ws.jobs.create(f"job{n}", "kb", "kb", [file])
            job = ws.jobs.claim("bench", 30, 3)
            assert job is not None
            ws.jobs.finish(job.id, "bench", "knowledge base 'kb' does not exist")
            if n in (1, 2, args.jobs):
                report(db, f"after job {n:3}")
        for n in range(args.backlog):
            ws.jobs.create(f"backlog{n}", "kb", "kb", [file])
        while (job := ws.jobs.claim("bench", 30, 3)) is not None:
            ws.jobs.finish(job.id, "bench", "knowledge base 'kb' does not exist")
        report(db, f"after a backlog of {args.backlog} jobs")
        ws.close()


if __name__ == "__main__":
    main()
