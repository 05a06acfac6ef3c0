"""Read a real vLLM server's Prometheus counters, to see what happened to a request."""

from __future__ import annotations

import time

import httpx

from rag.llm_server import server_root


def metric(base_url: str, name: str, unless: str = "\0") -> float:
    """Sum of all samples of ``name`` (every engine, every label), leaving out lines containing ``unless``."""
    text = httpx.get(f"{server_root(base_url)}/metrics", timeout=10, trust_env=False).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.split("{", 1)[0].split(" ", 1)[0] == name and unless not in line
    )


def running_requests(base_url: str) -> float:
    return metric(base_url, "vllm:num_requests_running")


def finished_requests(base_url: str) -> float:
    """Requests that ended by themselves (stop, length, repetition, error), not cancelled ones.

    vLLM labels this counter by finish reason, "abort" included (an abort the engine reports).
    """
    return metric(base_url, "vllm:request_success_total", unless='finished_reason="abort"')


def wait_until_idle(base_url: str, seconds: float = 10) -> float:
    """Poll until no request runs (or ``seconds`` pass); returns the last running count."""
    deadline = time.monotonic() + seconds
    while (running := running_requests(base_url)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return running
