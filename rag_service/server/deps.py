"""The services of one app, built once and handed to routers through FastAPI dependencies."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from rag_service.admin.access import Principal
from rag_service.server.auth import Authenticator
from rag_service.server.config import api_keys
from rag_service.server.limits import KeyLimits
from rag_service.server.problems import UnauthorizedError
from rag_service.server.services.chat import ChatService
from rag_service.server.services.documents import DocumentService
from rag_service.server.services.embeddings import EmbeddingService
from rag_service.server.services.feedback import FeedbackService
from rag_service.server.services.glossary import GlossaryService
from rag_service.server.services.health import Readiness
from rag_service.server.services.jobs import IngestJobs
from rag_service.server.services.kbs import KnowledgeBaseService
from rag_service.server.services.people import PeopleService
from rag_service.server.services.reports import ReportService
from rag_service.server.services.search import SearchService
from rag_service.server.services.writes import WriteGate
from rag_service.server.workspaces import Workspaces
from rag_service.settings import Settings


@dataclass
class Services:
    auth: Authenticator
    limits: KeyLimits
    workspaces: Workspaces
    upload_root: Path
    readiness: Readiness
    kbs: KnowledgeBaseService
    jobs: IngestJobs
    documents: DocumentService
    search: SearchService
    chat: ChatService
    feedback: FeedbackService
    glossary: GlossaryService
    reports: ReportService
    people: PeopleService
    embeddings: EmbeddingService

    @classmethod
    def build(cls, settings: Settings) -> Services:
        workspaces = Workspaces(settings)
        if settings.upload_dir is not None:
            settings.upload_dir.mkdir(parents=True, exist_ok=True)
        # A private directory per process: replicas sharing a data dir never see each other's uploads.
        upload_root = Path(tempfile.mkdtemp(prefix="rag-uploads-", dir=settings.upload_dir))
        jobs = IngestJobs(workspaces, settings.ingest_queue_size, settings.shutdown_drain_s, settings.serve_workers)
        writes = WriteGate(settings.write_lock_timeout_s)
        limits = KeyLimits(settings.key_requests_per_minute, settings.key_concurrent_chats)
        auth = Authenticator(api_keys(settings), lambda: workspaces.current().people)
        return cls(auth=auth, limits=limits, workspaces=workspaces, upload_root=upload_root,
                   readiness=Readiness(workspaces), kbs=KnowledgeBaseService(workspaces, writes), jobs=jobs,
                   documents=DocumentService(workspaces, jobs, upload_root, settings.max_upload_files, writes),
                   search=SearchService(workspaces),
                   chat=ChatService(workspaces, settings.chat_concurrency, settings.chat_queue_size,
                                    settings.max_history_messages, limits),
                   feedback=FeedbackService(workspaces), glossary=GlossaryService(workspaces, writes),
                   reports=ReportService(settings.reports_dir), people=PeopleService(workspaces),
                   embeddings=EmbeddingService(workspaces, settings.max_embedding_inputs,
                                               settings.max_embedding_tokens))

    def start(self) -> None:
        self.jobs.start()
        self.readiness.warm_up()

    def stop(self) -> None:
        self.chat.shutdown()
        self.jobs.stop()
        self.workspaces.close()
        shutil.rmtree(self.upload_root, ignore_errors=True)


def _services(request: Request) -> Services:
    return request.app.state.services


AppServices = Annotated[Services, Depends(_services)]


def _caller(request: Request) -> Principal:
    """Who sent this request: ``guard`` put it there after checking the key."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise UnauthorizedError("missing or invalid API key: send 'Authorization: Bearer <key>'")
    return principal


Caller = Annotated[Principal, Depends(_caller)]
