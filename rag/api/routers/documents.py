"""Documents: upload (a background ingestion job), list, details, download, delete.

Access rule (docs/api.md):
* reads (list, details, download) show only documents sharing a group with the key
  (admins: all). Anything else answers 404, exactly like an id that does not exist;
* upload: admins assign any groups; other keys only groups they have (default: all
  the key's groups);
* delete: admins, or a key sharing a group with the document (= a key that can see it).

Document ids are paths (``reports/2024/q3.pdf``) and are used as they are in URLs
(percent-encode spaces and the like); ``/file`` after the id downloads the original.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from rag.api.auth import Caller, Principal
from rag.api.deps import service
from rag.api.errors import ErrorBody
from rag.api.jobs import Job
from rag.api.uploads import groups_folder, receive_upload, safe_filename
from rag.keys import KeyStoreError, parse_groups
from rag.service import RagService
from rag.store.base import DocumentInfo

router = APIRouter(prefix="/v1", tags=["documents"])
Service = Annotated[RagService, Depends(service)]
NOT_FOUND = "No document with this id."  # the same words whether it is missing or hidden


class DocumentOut(BaseModel):
    doc_id: str
    name: str = Field(description="The file name.")
    source: str
    title: str | None = None
    groups: list[str]
    chunks: int
    pages: int
    content_hash: str | None
    complete: bool = Field(description="False while an ingestion of this document is unfinished.")

    @classmethod
    def of(cls, info: DocumentInfo) -> DocumentOut:
        return cls(doc_id=info.doc_id, name=Path(info.source or info.doc_id).name, source=info.source,
                   title=info.title, groups=info.groups, chunks=info.chunks, pages=info.pages,
                   content_hash=info.content_hash, complete=info.complete)


class DocumentPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[DocumentOut]


class UploadAccepted(BaseModel):
    job_id: str
    status_url: str
    groups: list[str]
    files: list[str] = Field(description="The stored file names (sanitised).")


class Deleted(BaseModel):
    doc_id: str
    deleted: bool = True
    file_removed: bool = Field(description="Whether the uploaded original was removed too.")


def visible(svc: RagService, caller: Principal, doc_id: str) -> DocumentInfo:
    info = svc.document(doc_id, caller.read_groups)
    if info is None:
        raise HTTPException(status_code=404, detail=NOT_FOUND)
    return info


# --- upload ---------------------------------------------------------------------------
UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["files"],
        "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                      "description": "One or more documents."},
            "groups": {"type": "string", "description": "Comma-separated groups for the documents "
                       "(default: the key's groups; admins: RAG_DEFAULT_GROUPS)."},
        },
    }}},
}


def upload_groups(caller: Principal, fields: dict[str, list[str]], default: list[str]) -> list[str]:
    try:
        groups = parse_groups(",".join(fields.get("groups", [])))
    except KeyStoreError as exc:
        raise HTTPException(status_code=422, detail=f"Invalid request: groups: {exc}.") from None
    if not groups:
        groups = list(caller.groups) if not caller.admin else (list(caller.groups) or list(default))
    if not caller.may_assign(groups):
        raise HTTPException(status_code=403, detail="A non-admin key can only assign groups it has: "
                            + ", ".join(caller.groups) + ".")
    return groups


@router.post("/documents", status_code=202, response_model=UploadAccepted,
                    summary="Upload documents; ingestion runs as a background job.",
                    openapi_extra={"requestBody": UPLOAD_BODY},
                    responses={403: {"model": ErrorBody, "description": "Groups the key may not assign."},
                               415: {"model": ErrorBody, "description": "Not multipart/form-data."}})
async def upload(request: Request, caller: Caller, svc: Service) -> UploadAccepted:
    settings = request.app.state.settings
    upload = await receive_upload(request, settings.data_dir / "uploads")
    try:
        if not upload.files:
            raise HTTPException(status_code=422, detail="Invalid request: files: attach at least one file.")
        groups = upload_groups(caller, upload.fields, settings.default_groups)
        names = [safe_filename(sent) for sent, _ in upload.files]
        if len(set(names)) != len(names):
            raise HTTPException(status_code=422, detail="Invalid request: files: two files have the same name.")
        folder = settings.documents_dir / groups_folder(groups)
        upload.targets = [folder / name for name in names]
        job = request.app.state.jobs.submit(caller.key_id, upload, folder, groups)
    except BaseException:
        upload.discard()
        raise
    return UploadAccepted(job_id=job.id, status_url=f"/v1/jobs/{job.id}", groups=groups, files=names)


@router.get("/jobs/{job_id}", response_model=Job, summary="Progress and per-file results of an upload.")
def job_status(job_id: str, request: Request, caller: Caller) -> Job:
    job = request.app.state.jobs.get(job_id, None if caller.admin else caller.key_id)
    if job is None:
        raise HTTPException(status_code=404, detail="No job with this id.")
    return job


# --- reading ------------------------------------------------------------------------
@router.get("/documents", response_model=DocumentPage, summary="The caller's documents, paged.")
def list_documents(
    caller: Caller,
    svc: Service,
    name: Annotated[str | None, Query(max_length=200, description="Part of the file name or id (any case).")] = None,
    group: Annotated[str | None, Query(max_length=64, description="Only documents in this group.")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DocumentPage:
    docs = sorted(svc.documents(caller.read_groups).values(), key=lambda d: d.doc_id)
    if name:
        needle = name.lower()
        docs = [d for d in docs if needle in d.doc_id.lower() or needle in (d.source or "").lower()]
    if group:
        docs = [d for d in docs if group in d.groups]
    return DocumentPage(total=len(docs), offset=offset, limit=limit,
                        items=[DocumentOut.of(d) for d in docs[offset : offset + limit]])


@router.get("/documents/{doc_id:path}/file", summary="Download the original file.",
            response_class=FileResponse, responses={200: {"content": {"application/octet-stream": {}}}})
def download(doc_id: str, caller: Caller, svc: Service):
    info = svc.document(doc_id, caller.read_groups)
    if info is None:
        # "<id>/file" may itself be a document id: show its details rather than a 404.
        return details(f"{doc_id}/file", caller, svc)
    path = Path(info.path) if info.path else None
    if path is None or not path.is_file():
        raise HTTPException(status_code=404, detail="The original file of this document is no longer on the server.")
    return FileResponse(path, filename=path.name, content_disposition_type="attachment")


@router.get("/documents/{doc_id:path}", response_model=DocumentOut, summary="A document's metadata and chunk count.")
def details(doc_id: str, caller: Caller, svc: Service) -> DocumentOut:
    return DocumentOut.of(visible(svc, caller, doc_id))


@router.delete("/documents/{doc_id:path}", response_model=Deleted, summary="Delete a document (and its upload).")
async def delete(doc_id: str, request: Request, caller: Caller, svc: Service) -> Deleted:
    info = visible(svc, caller, doc_id)
    if not caller.may_delete(info.groups):
        raise HTTPException(status_code=404, detail=NOT_FOUND)
    await run_in_threadpool(svc.delete_document, doc_id)
    # Only files the API stored itself are removed; originals ingested from elsewhere stay.
    documents_dir = request.app.state.settings.documents_dir.resolve()
    path = Path(info.path).resolve() if info.path else None
    removed = False
    if path is not None and path.is_relative_to(documents_dir) and path.is_file():
        path.unlink()
        removed = True
    return Deleted(doc_id=doc_id, file_removed=removed)
