"""`rag bench api`: concurrent clients against /v1/search and /v1/query on loopback.

Either targets a running API (``--url`` plus a key) or starts one here in its own
process (``rag serve`` on a free port, over the configured store, with a temporary admin
key in its own key file). Each client sends one request at a time for ``seconds``; the
requests still running then are waited for (bounded by RAG_API_REQUEST_TIMEOUT) and
counted. Reports requests/s, latency percentiles and errors per endpoint.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import httpx
import yaml

from rag.settings import Settings

# Used when no --questions file is given: generic questions that retrieval can work on.
DEFAULT_QUESTIONS = [
    "What is the main topic of this document?",
    "Summarise the key findings.",
    "What are the requirements described?",
    "Who is responsible for approving changes?",
    "What does the policy say about security?",
    "How is the configuration file structured?",
    "What happened in the last quarter?",
    "Which steps are needed to install the software?",
]
ENDPOINTS = ("/v1/search", "/v1/query")


class BenchError(RuntimeError):
    """The benchmark cannot run, explained in one sentence."""


def question_of(row) -> str | None:
    if isinstance(row, dict):
        row = row.get("question") or row.get("text") or row.get("query")
    return str(row)[:2000] if row else None


def load_questions(path: Path | None) -> list[str]:
    """Questions from YAML (a list), JSONL (field ``question``, ``text`` or ``query``) or text lines."""
    if path is None:
        return DEFAULT_QUESTIONS
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            rows = yaml.safe_load(text) or []
        else:
            rows = [json.loads(line) if line.startswith("{") else line
                    for line in (raw.strip() for raw in text.splitlines()) if line]
    except OSError as exc:
        raise BenchError(f"cannot read the questions file {path}: {exc.strerror}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise BenchError(f"the questions file {path} is not valid: {exc}") from None
    questions = [q for q in map(question_of, rows if isinstance(rows, list) else []) if q]
    if not questions:
        raise BenchError(f"no questions found in {path}")
    return questions


def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise BenchError(f"the benchmark only targets loopback addresses, not {host or url}")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def summarise(latencies: list[float], errors: Counter, elapsed: float, statuses: Counter) -> dict:
    ok = sorted(latencies)
    total = len(ok) + sum(errors.values())
    return {
        "requests": total,
        "ok": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "requests_per_s": round(total / elapsed, 2) if elapsed else 0.0,
        "p50_ms": round(percentile(ok, 0.50) * 1000, 1),
        "p95_ms": round(percentile(ok, 0.95) * 1000, 1),
        "p99_ms": round(percentile(ok, 0.99) * 1000, 1),
        "max_ms": round(ok[-1] * 1000, 1) if ok else 0.0,
        **({"answer_status": dict(statuses)} if statuses else {}),
    }


async def drive(url: str, key: str, clients: int, seconds: float, query_share: float,
                questions: list[str], timeout: float) -> dict:
    latencies = {e: [] for e in ENDPOINTS}
    errors = {e: Counter() for e in ENDPOINTS}
    statuses = Counter()
    n_query = round(clients * query_share)
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}

    async def client(number: int, endpoint: str, http: httpx.AsyncClient) -> None:
        rng = random.Random(number)
        while time.perf_counter() < deadline:
            question = rng.choice(questions)
            body = {"question": question} if endpoint == "/v1/query" else {"query": question}
            started = time.perf_counter()
            try:
                response = await http.post(endpoint, json=body)
            except httpx.HTTPError as exc:
                errors[endpoint][type(exc).__name__] += 1
                continue
            if response.status_code == 200:
                latencies[endpoint].append(time.perf_counter() - started)
                if endpoint == "/v1/query":
                    statuses[response.json().get("status", "?")] += 1
            else:
                errors[endpoint][f"HTTP {response.status_code}"] += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits,
                                 trust_env=False) as http:
        await asyncio.gather(*(client(i, "/v1/query" if i < n_query else "/v1/search", http)
                               for i in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "elapsed_s": round(elapsed, 1),
        "endpoints": {
            "/v1/search": summarise(latencies["/v1/search"], errors["/v1/search"], elapsed, Counter()),
            "/v1/query": summarise(latencies["/v1/query"], errors["/v1/query"], elapsed, statuses),
        },
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalServer:
    """`rag serve` in a child process with a temporary admin key (removed afterwards)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-api-", dir=settings.run_dir))
        self.log = self.workdir / "server.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> LocalServer:
        from rag.keys import KeyStore

        keys_file = self.workdir / "keys.json"
        _, self.key = KeyStore(keys_file).create("bench", None, admin=True)
        env = os.environ | {"RAG_API_KEYS_FILE": str(keys_file), "RAG_LOG_LEVEL": "WARNING",
                            "RAG_DATA_DIR": str(self.settings.data_dir)}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--host", "127.0.0.1",
                                          "--port", str(self.port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise BenchError("the API server did not start: " + (" / ".join(tail) or "no output"))
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise BenchError(f"the API server did not answer within {timeout:.0f} s (log: {self.log})")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for path in sorted(self.workdir.glob("*"), reverse=True):
            path.unlink(missing_ok=True)
        self.workdir.rmdir()


def warm_up(url: str, key: str, timeout: float) -> None:
    """One search and one question first, so loading models is not measured."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=timeout, trust_env=False) as http:
        response = http.post("/v1/search", json={"query": DEFAULT_QUESTIONS[0]})
        if response.status_code in (401, 403):
            raise BenchError("the API refused the key (pass a valid one with --key or RAG_BENCH_API_KEY)")
        http.post("/v1/query", json={"question": DEFAULT_QUESTIONS[0]})


def run_api_benchmark(settings: Settings, *, clients: int = 50, seconds: float = 60.0, url: str | None = None,
                      key: str | None = None, query_share: float = 0.5, questions_file: Path | None = None) -> dict:
    if clients < 1 or seconds <= 0 or not 0 <= query_share <= 1:
        raise BenchError("use at least 1 client, a positive duration and a query share between 0 and 1")
    questions = load_questions(questions_file)
    timeout = settings.api_request_timeout + 60  # the server queues answers up to api_request_timeout

    def measure(target: str, token: str) -> dict:
        warm_up(target, token, timeout)
        result = asyncio.run(drive(target, token, clients, seconds, query_share, questions, timeout))
        return {"url": target, "clients": clients, "seconds": seconds, "query_clients": round(clients * query_share),
                "questions": len(questions), **result}

    if url:
        require_loopback(url)
        if not key:
            raise BenchError("--url needs an API key (--key or RAG_BENCH_API_KEY)")
        return measure(url.rstrip("/"), key) | {"server": "given"}
    with LocalServer(settings) as server:
        return measure(server.url, server.key) | {"server": "started by the benchmark"}
