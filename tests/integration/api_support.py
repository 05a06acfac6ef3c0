"""Helpers for the API tests: a real uvicorn server on a free loopback port, keys, uploads."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from rag.api.app import create_app
from rag.keys import KeyStore


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """The real app under uvicorn in a thread (loopback only); ``url`` once started."""

    def __init__(self, settings, service, *, access_log: bool = False):
        self.settings = settings
        self.service = service
        self.app = create_app(settings, service)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # log_config=None: uvicorn leaves logging alone, so pytest's caplog sees its records.
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None,
                                log_level="info", access_log=access_log, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api-under-test", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 300  # startup loads the embedding model
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server under test did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, key: str | None = None, timeout: float = 120.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout, trust_env=False)


def make_key(settings, name: str, groups: str | None, admin: bool = False) -> str:
    _, token = KeyStore.for_settings(settings).create(name, groups, admin=admin)
    return token


def upload(client: httpx.Client, files: dict[str, bytes], groups: str | None = None) -> httpx.Response:
    data = {"groups": groups} if groups is not None else {}
    return client.post("/v1/documents", files=[("files", (name, body)) for name, body in files.items()], data=data)


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish within {timeout:.0f} s")


def ingest(client: httpx.Client, files: dict[str, bytes], groups: str | None = None) -> dict:
    """Upload and wait: the finished job, every file checked as stored."""
    response = upload(client, files, groups)
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["job_id"])
    assert job["state"] == "done", job
    assert all(f["status"] in ("added", "updated", "unchanged") for f in job["files"]), job
    return job
