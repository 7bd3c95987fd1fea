"""Documents of a knowledge base: uploads become ingest jobs; list and delete go straight to the core."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_service.admin import people
from rag_service.admin.access import Access, Principal
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

    def prepare_upload(self, who: Principal, kb_ref: str) -> UploadTarget:
        """Checked before a byte of the body is read: the KB exists, the caller may write to it, and the queue has
        a place, now reserved (give it back with ``abandon`` if the upload fails before ``submit``)."""
        kb = Access(self.workspaces.current()).kb(who, kb_ref, "write")
        self.jobs.reserve()
        job_id = self.jobs.new_id()
        return UploadTarget(kb, job_id, self.upload_root / job_id)

    def abandon(self, target: UploadTarget) -> None:
        shutil.rmtree(target.directory, ignore_errors=True)
        self.jobs.release()

    def submit(self, who: Principal, target: UploadTarget, files: list[SavedFile], *,
               replace: bool = False) -> dict[str, Any]:
        """Queue the files; without ``replace`` a file named like a different document is refused (409) now,
        and again by the worker if such a document arrived meanwhile. Each file is audited as an upload, or as a
        replacement when it takes the name of a document the KB holds."""
        ws = self.workspaces.current()
        if not replace:
            check_no_collision(ws, target.kb, [(f.source, f.doc_id) for f in files])
        status = self.jobs.submit(target.kb, target.job_id, files, replace=replace)
        held = {d.source: d.id for d in ws.catalog.documents(target.kb.id)} if replace else {}
        for f in files:
            replaced = held.get(f.source)
            action = "document.replace" if replaced is not None and replaced != f.doc_id else "document.upload"
            people.audit(ws, who, action, kb=target.kb.name, target=f.doc_id,
                         detail={"source": f.source, "job_id": target.job_id,
                                 **({"replaces": replaced} if action == "document.replace" else {})})
        shutil.rmtree(target.directory, ignore_errors=True)  # the bytes are in the database now
        return {"job_id": target.job_id, "status": status,
                "documents": [{**f.to_json(), "status": "queued"} for f in files]}

    def list(self, who: Principal, kb_ref: str) -> dict[str, Any]:
        ws = self.workspaces.current()
        kb = Access(ws).kb(who, kb_ref)
        return {"documents": [d.to_json() for d in ws.catalog.documents(kb.id)]}

    def delete(self, who: Principal, kb_ref: str, doc_id: str) -> None:
        ws = self.workspaces.current()
        kb = Access(ws).kb(who, kb_ref, "write")
        source = next((d.source for d in ws.catalog.documents(kb.id) if d.id == doc_id), None)
        self.writes.run(ws, lambda w, timeout: delete_document(w, kb, doc_id, lock_timeout=timeout))
        people.audit(ws, who, "document.delete", kb=kb.name, target=doc_id, detail={"source": source})
