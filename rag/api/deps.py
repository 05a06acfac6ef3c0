"""Shared per-request dependencies: the app's service, settings, jobs and metrics."""

from __future__ import annotations

from fastapi import HTTPException, Request

from rag.service import RagService


def service(request: Request) -> RagService:
    svc = request.app.state.service
    if svc is None:  # only between startup failure and shutdown
        raise HTTPException(status_code=503, detail="The service is starting or stopping; retry shortly.")
    return svc


def check_question(request: Request, text: str, field: str = "question") -> str:
    """Questions are refused (not truncated) when blank or longer than the configured limit."""
    limit = request.app.state.settings.max_question_chars
    if not text.strip():
        raise HTTPException(status_code=422, detail=f"Invalid request: {field}: must not be blank.")
    if len(text) > limit:
        raise HTTPException(status_code=422, detail=f"Invalid request: {field}: longer than {limit} characters.")
    return text
