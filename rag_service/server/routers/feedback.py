from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from rag_service.server.deps import AppServices, Caller
from rag_service.server.schemas import FeedbackCreated, FeedbackIn, FeedbackList, ReportList

router = APIRouter()


@router.post("/feedback", status_code=201, response_model=FeedbackCreated, tags=["feedback"],
             summary="Thumbs up or down on an answer, with an optional comment")
def create_feedback(body: FeedbackIn, services: AppServices, who: Caller) -> dict[str, str]:
    return services.feedback.create(who, body)


@router.get("/feedback", response_model=FeedbackList, tags=["feedback"],
            summary="Feedback on a knowledge base's answers, oldest first: everyone's for its managers, the caller's "
            "own for others (rag feedback export turns it into questions for rag eval answers)")
def list_feedback(kb: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.feedback.list(who, kb)


@router.get("/reports", response_model=ReportList, tags=["reports"],
            summary="Evaluation reports: docs/eval and RAG_REPORTS_DIR (admins)")
def list_reports(services: AppServices, who: Caller) -> dict[str, Any]:
    return services.reports.list(who)


@router.get("/reports/{report_id:path}/{fmt}", tags=["reports"], response_class=FileResponse,
            summary="One report as html, md or json")
def get_report(report_id: str, fmt: str, services: AppServices, who: Caller) -> FileResponse:
    return FileResponse(services.reports.file(who, report_id, fmt))
