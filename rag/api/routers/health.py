"""Operations: GET /healthz (process up), GET /readyz (store and model server), GET /metrics.

/healthz and /readyz need no key (load balancers and orchestrators probe them) and say
nothing private. /metrics needs an admin key (Prometheus sends it as a bearer token).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from rag.api.auth import Admin
from rag.api.errors import ErrorBody

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    ready: bool
    store: str = Field(description="'ok', or why the store is not usable.")
    llm: str = Field(description="'ok', or 'unreachable' when the model server does not answer.")


@router.get("/healthz", response_model=Health, summary="The process is up (no key needed).")
def healthz() -> Health:
    return Health()


def check_store(service) -> str:
    if service is None:
        return "not open"
    try:
        service.store.count()
    except Exception as exc:  # any failure means "not ready"; the message says which
        return f"failing: {type(exc).__name__}"
    return "ok"


@router.get("/readyz", response_model=Readiness, summary="Store open and model server reachable (503 if not).",
            responses={503: {"model": Readiness}})
async def readyz(request: Request):
    service = request.app.state.service
    store = await run_in_threadpool(check_store, service)
    llm_up = service is not None and await run_in_threadpool(service.llm.health)
    state = Readiness(ready=store == "ok" and llm_up, store=store, llm="ok" if llm_up else "unreachable")
    return JSONResponse(state.model_dump(), status_code=200 if state.ready else 503)


@router.get("/metrics", summary="Prometheus metrics (admin key).", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody}})
def metrics(request: Request, caller: Admin) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
