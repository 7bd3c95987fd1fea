"""Documents of a knowledge base: uploads become ingest jobs; list and delete go straight to the core."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_service.admin.documents import delete_document
from rag_service.ingestion.pipeline import check_no_collision
from rag_service.server.services.jobs import IngestJobs
from rag_service.server.services.writes import WriteGate
from rag_service.server.uploads import Pace, SavedFile
from rag_service.server.workspaces import Workspaces
from rag_service.storage.catalog import KnowledgeBase


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """Where one accepted upload request is written: checked before a byte of the body is read."""

    kb: KnowledgeBase
    job_id: str
    directory: Path


class DocumentService:
    def __init__(self, workspaces: Workspaces, jobs: IngestJobs, upload_root: Path, max_files: int,
                 writes: WriteGate) -> None:
        self.workspaces = workspaces
        self.writes = writes
        self.jobs = jobs
        self.upload_root = upload_root
        self.max_files = max_files

    @property
    def max_file_bytes(self) -> int:
        """The core's per-file limit (RAG_MAX_FILE_MB), enforced here while the upload streams in."""
        return int(self.workspaces.settings.max_file_mb * 1024 * 1024)

    @property
    def pace(self) -> Pace:
        """How slowly an upload may arrive before it loses its place (RAG_UPLOAD_IDLE_S, RAG_UPLOAD_MIN_KBPS)."""
        settings = self.workspaces.settings
        return Pace(settings.upload_idle_s, settings.upload_min_kbps * 1024)

    def prepare_upload(self, kb_ref: str) -> UploadTarget:
        """Checked before a byte of the body is read: the KB exists and the queue has a place, now reserved (give
        it back with ``abandon`` if the upload fails before ``submit``)."""
        kb = self.workspaces.current().catalog.get_kb(kb_ref)
        self.jobs.reserve()
        job_id = self.jobs.new_id()
        return UploadTarget(kb, job_id, self.upload_root / job_id)

    def abandon(self, target: UploadTarget) -> None:
        shutil.rmtree(target.directory, ignore_errors=True)
        self.jobs.release()

    def submit(self, target: UploadTarget, files: list[SavedFile], *, replace: bool = False) -> dict[str, Any]:
        """Queue the files; without ``replace`` a file named like a different document is refused (409) now,
        and again by the worker if such a document arrived meanwhile."""
        if not replace:
            check_no_collision(self.workspaces.current(), target.kb, [(f.source, f.doc_id) for f in files])
        status = self.jobs.submit(target.kb, target.job_id, files, replace=replace)
        shutil.rmtree(target.directory, ignore_errors=True)  # the bytes are in the database now
        return {"job_id": target.job_id, "status": status,
                "documents": [{**f.to_json(), "status": "queued"} for f in files]}

    def list(self, kb_ref: str) -> dict[str, Any]:
        ws = self.workspaces.current()
        kb = ws.catalog.get_kb(kb_ref)
        return {"documents": [d.to_json() for d in ws.catalog.documents(kb.id)]}

    def delete(self, kb_ref: str, doc_id: str) -> None:
        ws = self.workspaces.current()
        kb = ws.catalog.get_kb(kb_ref)
        self.writes.run(ws, lambda w, timeout: delete_document(w, kb, doc_id, lock_timeout=timeout))
