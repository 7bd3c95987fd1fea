from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from rag_service.server.deps import AppServices
from rag_service.server.schemas import FeedbackCreated, FeedbackIn, FeedbackList, ReportList

router = APIRouter()


@router.post("/feedback", status_code=201, response_model=FeedbackCreated, tags=["feedback"],
             summary="Thumbs up or down on an answer, with an optional comment")
def create_feedback(body: FeedbackIn, services: AppServices) -> dict[str, str]:
    return services.feedback.create(body)


@router.get("/feedback", response_model=FeedbackList, tags=["feedback"],
            summary="Feedback on a knowledge base's answers, oldest first (rag feedback export turns it into "
            "questions for rag eval answers)")
def list_feedback(kb: str, services: AppServices) -> dict[str, Any]:
    return services.feedback.list(kb)


@router.get("/reports", response_model=ReportList, tags=["reports"],
            summary="Evaluation reports: docs/eval and RAG_REPORTS_DIR")
def list_reports(services: AppServices) -> dict[str, Any]:
    return services.reports.list()


@router.get("/reports/{report_id:path}/{fmt}", tags=["reports"], response_class=FileResponse,
            summary="One report as html, md or json")
def get_report(report_id: str, fmt: str, services: AppServices) -> FileResponse:
    return FileResponse(services.reports.file(report_id, fmt))
