"""The FastAPI application factory.

`create_app(settings, service)` wires the routers, auth, limits, metrics and error
handlers around one `RagService`. With ``service=None`` the app opens its own at
startup and closes it at shutdown. Run it in ONE process: it owns the embedded store.
"""

from __future__ import annotations

import logging
import shutil
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from rag.api.admission import AnswerSlots
from rag.api.errors import ErrorBody, LastResort, OpenAIErrorBody, documented_errors, install_error_handlers
from rag.api.jobs import JobManager
from rag.api.limits import BodyLimit
from rag.api.metrics import ApiMetrics, MetricsMiddleware
from rag.api.routers import documents, health, me, openai, query
from rag.embedding import EmbeddingError
from rag.keys import KeyStore
from rag.service import RagService
from rag.settings import Settings

log = logging.getLogger("rag.api")

# Blocking work (retrieval, waiting on the model server) runs in worker threads; the
# default 40 would queue searches behind slow streamed answers under load.
WORKER_THREADS = 128

DESCRIPTION = """Private question answering over your own documents.

Every route except `/healthz` and `/readyz` needs `Authorization: Bearer <key>` (keys are
made with `rag keys create`). A key's groups decide which documents it can see.
See docs/api.md for the access rules and examples."""


def create_app(settings: Settings, service: RagService | None = None) -> FastAPI:
    owns_service = service is None
    metrics = ApiMetrics(lambda: app.state.service)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, WORKER_THREADS)
        if owns_service:
            app.state.service = app.state.jobs.service = await run_in_threadpool(RagService, settings)
        # Half-received uploads of an earlier run are of no use to anyone.
        shutil.rmtree(settings.data_dir / "uploads", ignore_errors=True)
        try:
            # Load the embedding model now, not in the first user's request.
            await run_in_threadpool(app.state.service.embedder.warm_up)
        except EmbeddingError as exc:
            log.error("%s Searches will fail until it is fixed.", exc)
        try:
            yield
        finally:
            await run_in_threadpool(app.state.jobs.shutdown)
            if owns_service and app.state.service is not None:
                app.state.service.close()
                app.state.service = None

    app = FastAPI(
        title="On-premises RAG API",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.keys = KeyStore.for_settings(settings)
    app.state.metrics = metrics
    app.state.jobs = JobManager(service, metrics)
    app.state.answer_slots = AnswerSlots(settings.api_max_concurrent_answers, settings.api_request_timeout)
    metrics.jobs_active.set_function(app.state.jobs.active)

    install_error_handlers(app)
    app.add_middleware(LastResort)
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: also counts the last-resort 500s

    app.include_router(health.router)
    app.include_router(query.router, responses=documented_errors(ErrorBody))
    app.include_router(openai.router, responses=documented_errors(OpenAIErrorBody))
    app.include_router(documents.router, responses=documented_errors(ErrorBody))
    app.include_router(me.router, responses=documented_errors(ErrorBody))
    return app
