"""Shared per-request dependencies: the app's service, settings, jobs and metrics."""

from __future__ import annotations

from fastapi import HTTPException, Request

from rag.service import RagService


def service(request: Request) -> RagService:
    svc = request.app.state.service
    if svc is None:  # only between startup failure and shutdown
        raise HTTPException(status_code=503, detail="The service is starting or stopping; retry shortly.")
    return svc

