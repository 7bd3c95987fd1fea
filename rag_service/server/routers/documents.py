from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from rag_service.server.deps import AppServices, Caller
from rag_service.server.schemas import DocumentsOut, JobOut, UploadAccepted
from rag_service.server.uploads import FIELD, save_uploads

router = APIRouter(tags=["documents"])

_MULTIPART_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


@router.post("/kbs/{kb}/documents", status_code=202, openapi_extra=_MULTIPART_BODY, response_model=UploadAccepted,
             summary="Upload one or more files (multipart field 'file'); ingestion runs as a job")
async def upload(kb: str, request: Request, response: Response, services: AppServices, who: Caller,
                 replace: Annotated[bool, Query(description="replace a different document that has the same file "
                                                "name (default: 409 document_exists)")] = False) -> dict[str, Any]:
    docs = services.documents
    target = await run_in_threadpool(docs.prepare_upload, who, kb)
    try:
        files = await save_uploads(request, target.directory, max_bytes=docs.max_file_bytes,
                                   max_files=docs.max_files, pace=docs.pace)
        body = await run_in_threadpool(lambda: docs.submit(who, target, files, replace=replace))
    except BaseException:
        docs.abandon(target)
        raise
    response.headers["Location"] = f"/v1/jobs/{body['job_id']}"
    return body


@router.get("/kbs/{kb}/documents", response_model=DocumentsOut, summary="Documents of a knowledge base")
def list_documents(kb: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.documents.list(who, kb)


@router.delete("/kbs/{kb}/documents/{doc_id}", status_code=204, summary="Delete a document and its chunks")
def delete_document(kb: str, doc_id: str, services: AppServices, who: Caller) -> Response:
    services.documents.delete(who, kb, doc_id)
    return Response(status_code=204)


@router.get("/jobs/{job_id}", response_model=JobOut, response_model_exclude_none=True,
            summary="An upload job: queued, running, succeeded, failed or cancelled")
def get_job(job_id: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.jobs.get(who, job_id)


@router.delete("/jobs/{job_id}", response_model=JobOut, response_model_exclude_none=True,
               summary="Cancel an upload job (queued or running); a job that ended is returned as it ended")
def cancel_job(job_id: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.jobs.cancel(who, job_id)
