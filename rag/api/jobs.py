"""Background ingestion jobs: uploads are ingested in one worker thread while the API
keeps answering queries (reads never wait for the service's write lock).

Jobs live in memory (the last `KEEP_JOBS`); a restart forgets finished jobs, never
documents: what a job stored is in the store, and its files are in the documents folder.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from rag.api.uploads import Upload

log = logging.getLogger("rag.api.jobs")

KEEP_JOBS = 1000
JobState = Literal["queued", "running", "done", "failed"]


class JobFile(BaseModel):
    name: str = Field(description="The file name as uploaded (after sanitising).")
    doc_id: str | None = None
    status: str = Field("queued", description="queued, then the ingestion outcome: added, updated, "
                        "unchanged, regrouped or failed.")
    reason: str | None = None
    chunks: int = 0
    pages: int | None = None


class JobProgress(BaseModel):
    files_total: int = 0
    files_done: int = 0
    chunks_embedded: int = 0


class Job(BaseModel):
    id: str
    state: JobState = "queued"
    groups: list[str]
    created: float = Field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: JobProgress = Field(default_factory=JobProgress)
    files: list[JobFile]
    message: str | None = Field(None, description="Why the whole job failed, when it did.")
    owner: str = Field("", exclude=True)  # the key id that uploaded; only it and admins see the job


class JobManager:
    """Runs ingestion jobs one at a time (the store has one writer) and reports on them."""

    def __init__(self, service, metrics=None):
        self.service = service
        self.metrics = metrics
        self._jobs: dict[str, Job] = {}
        self._work: dict[str, tuple[Upload, Path]] = {}
        self._mutex = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, owner: str, upload: Upload, folder: Path, groups: list[str]) -> Job:
        """Queue the ingestion of an upload whose files go into ``folder`` (one groups folder)."""
        names = [target.name for target in upload.targets]
        job = Job(id="job_" + uuid.uuid4().hex[:16], groups=groups, owner=owner,
                  files=[JobFile(name=n) for n in names], progress=JobProgress(files_total=len(names)))
        with self._mutex:
            self._jobs[job.id] = job
            self._work[job.id] = (upload, folder)
            while len(self._jobs) > KEEP_JOBS:
                oldest = next(iter(self._jobs))
                self._jobs.pop(oldest)
                self._work.pop(oldest, None)
            if self._pool is None:  # (re)started lazily: apps are also used without a lifespan
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-job")
            self._pool.submit(self._run, job.id)
        if self.metrics:
            self.metrics.jobs_queued.inc()
        return job

    def get(self, job_id: str, owner: str | None) -> Job | None:
        """A copy of the job if ``owner`` (a key id; None = admin) may see it."""
        with self._mutex:
            job = self._jobs.get(job_id)
            if job is None or (owner is not None and job.owner != owner):
                return None
            return job.model_copy(deep=True)

    def active(self) -> int:
        with self._mutex:
            return sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))

    def shutdown(self) -> None:
        """Drop queued jobs and wait for the running one (interrupting it would be safe, but wasted)."""
        with self._mutex:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # --- the worker ------------------------------------------------------------------
    def _run(self, job_id: str) -> None:
        with self._mutex:
            job, (upload, folder) = self._jobs.get(job_id), self._work.pop(job_id, (None, None))
        if job is None or upload is None:
            return
        job.state, job.started = "running", time.time()
        try:
            upload.place()
            # The whole groups folder: document ids are "<folder>/<name>" (unchanged files cost a hash).
            report = self.service.ingest([folder], groups=job.groups, progress=lambda e: self._on_event(job, e))
            by_path = {Path(r.path).resolve(): r for r in report.files}
            failed = set()
            for file, target in zip(job.files, upload.targets):
                result = by_path.get(target.resolve())
                if result is None:
                    file.status, file.reason = "failed", "the ingestion did not report on this file"
                else:
                    file.status, file.reason, file.doc_id = result.status, result.reason, result.doc_id
                    file.chunks, file.pages = result.chunks, result.pages
                if file.status == "failed":
                    failed.add(target)
            upload.settle(failed)
            job.state = "done"
        except Exception as exc:  # the job fails, the API lives on (placed files stay for a later run)
            log.exception("ingestion job %s failed", job_id)
            job.state, job.message = "failed", f"ingestion stopped: {exc}"
            for file in job.files:
                if file.status == "queued":
                    file.status, file.reason = "failed", job.message
        finally:
            upload.discard()
            job.finished = time.time()
            job.progress.files_done = sum(1 for f in job.files if f.status != "queued")
            if self.metrics:
                self.metrics.job_finished(job)

    def _on_event(self, job: Job, event: dict) -> None:
        kind = event.get("event")
        if kind == "file" and event.get("status") in ("ok", "failed"):  # processed, not unchanged
            job.progress.files_done = min(job.progress.files_done + 1, job.progress.files_total)
        elif kind == "chunks":
            job.progress.chunks_embedded += int(event.get("count", 0))
