"""Prometheus metrics of one API instance (its own registry, so test apps don't collide).

* requests and latencies per route *template* (``/v1/documents/{doc_id:path}``, never the
  concrete path: bounded label values, and no document names in metrics),
* per-stage answer timings and answer outcomes,
* documents and chunks stored (read from the store at scrape time),
* ingestion jobs and files, and generations cancelled because the client went away.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.schema import Answer

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class StoreCollector:
    """Documents and chunks stored, computed when Prometheus scrapes."""

    def __init__(self, service_getter):
        self.service_getter = service_getter

    def collect(self):
        service = self.service_getter()
        if service is None:
            return
        try:
            chunks = service.store.count()
            documents = len(service.documents())
        except Exception:  # a broken store shows in /readyz; the scrape still succeeds
            return
        yield GaugeMetricFamily("rag_documents_stored", "Documents in the store.", value=documents)
        yield GaugeMetricFamily("rag_chunks_stored", "Chunks (points) in the store.", value=chunks)


class ApiMetrics:
    def __init__(self, service_getter):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rag_http_requests_total", "HTTP requests by route template and status.",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("rag_http_request_duration_seconds", "Time to the end of the response.",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.answer_stage = Histogram("rag_answer_stage_seconds", "Seconds per answer stage.",
                                      ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.answers = Counter("rag_answers_total", "Answers by status.", ["status"], registry=r)
        self.jobs_queued = Counter("rag_ingest_jobs_submitted_total", "Ingestion jobs submitted.", registry=r)
        self.jobs_finished = Counter("rag_ingest_jobs_finished_total", "Ingestion jobs finished, by state.",
                                     ["state"], registry=r)
        self.jobs_active = Gauge("rag_ingest_jobs_active", "Ingestion jobs queued or running.", registry=r)
        self.files = Counter("rag_ingest_files_total", "Uploaded files ingested, by outcome.",
                             ["status"], registry=r)
        self.cancelled = Counter("rag_generations_cancelled_total",
                                 "Streamed answers stopped because the client disconnected.", ["route"], registry=r)
        r.register(StoreCollector(service_getter))

    def answer(self, answer: Answer) -> None:
        self.answers.labels(answer.status).inc()
        for stage, seconds in answer.timings.model_dump().items():
            if seconds:
                self.answer_stage.labels(stage).observe(seconds)

    def job_finished(self, job) -> None:
        self.jobs_finished.labels(job.state).inc()
        for file in job.files:
            self.files.labels(file.status).inc()


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI, so streamed responses stay streamed)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
