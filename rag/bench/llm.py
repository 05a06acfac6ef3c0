"""`rag bench llm`: cold start, time to first token, tokens/s and memory of the LLM server.

Every request sends a RAG-sized prompt (about 1,500 tokens of numbered sources plus a
question), streamed. Our client (``rag.llm.LLMClient``) and a bare httpx request to
vLLM's OpenAI endpoint take turns on the same prompts, so the client's overhead shows as
a same-run ratio. Each prompt starts with its own request number: vLLM caches shared
prompt prefixes, and a repeated prompt would measure that cache, not the model.

For the local server the benchmark runs its own server (own port, own run folder under
the data folder, the converted model shared), so a server in use is never disturbed.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil

from rag import llm_server
from rag.llm import LLMClient
from rag.settings import Settings

PROMPT_TOKENS = 1500

SYSTEM = (
    "You answer employees' questions using only the numbered sources below. Cite the sources you "
    "use like [1]. If the sources do not contain the answer, say that you don't know."
)
QUESTIONS = [
    "How many days of remote work are allowed per week, and who approves exceptions?",
    "What is the deadline for submitting travel expenses?",
    "Which laptops must use disk encryption?",
    "Who should be contacted when a security incident is suspected?",
]
# Passages in the style of internal policy documents (invented, not copied from anywhere).
PASSAGES = [
    (
        "Employees may work remotely up to three days per week after their probation period. Team leads "
        "approve the schedule, and exceptions longer than one month require approval from the department head."
    ),
    (
        "Travel expenses must be submitted in the expense tool within 30 days of the end of the trip. Receipts "
        "above 25 euros are mandatory; missing receipts need a signed declaration from the traveller."
    ),
    (
        "All company laptops must use full-disk encryption. The IT service desk enables it during setup and "
        "checks compliance every quarter; non-compliant devices lose access to the internal network."
    ),
    (
        "Suspected security incidents are reported to the security operations centre by phone or through the "
        "incident form. Do not try to investigate yourself, and keep the affected device switched on."
    ),
    (
        "The annual performance review takes place in November. Managers prepare written feedback, and "
        "employees complete a self-assessment two weeks before the meeting."
    ),
    (
        "Parking spaces at the headquarters are allocated by lottery every January. Employees with reduced "
        "mobility receive a reserved space on request, without taking part in the lottery."
    ),
    (
        "Purchases above 5,000 euros need three quotes and approval from procurement. Framework contracts "
        "cover office supplies, hardware and travel, and must be used where they apply."
    ),
    (
        "New employees receive their equipment on the first day. The onboarding checklist lists the trainings "
        "to complete during the first month, including data protection and workplace safety."
    ),
]


def _sources(client: LLMClient, rng: random.Random, budget: int) -> str:
    """Numbered sources of about ``budget`` tokens, passages in a random order."""
    parts, used, number = [], 0, 1
    while used < budget:
        passage = " ".join(rng.sample(PASSAGES, 3))
        block = f"[{number}] handbook-{rng.randint(1, 40)}.pdf, page {rng.randint(1, 120)}\n{passage}\n"
        parts.append(block)
        used += client.tokens.count(block)
        number += 1
    return "\n".join(parts)


def make_prompts(client: LLMClient, count: int, seed: int = 0) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    prompts = []
    for index in range(count):
        sources = _sources(client, rng, PROMPT_TOKENS - 120)
        question = QUESTIONS[index % len(QUESTIONS)]
        prompts.append(
            [
                {"role": "system", "content": f"Request {index}. {SYSTEM}"},
                {"role": "user", "content": f"Sources:\n{sources}\nQuestion: {question}"},
            ]
        )
    return prompts


def _timed_stream(chunks: Iterator[str], client: LLMClient) -> dict[str, float]:
    started = time.perf_counter()
    first = None
    text = []
    for chunk in chunks:
        if first is None:
            first = time.perf_counter()
        text.append(chunk)
    ended = time.perf_counter()
    tokens = client.tokens.count("".join(text))
    first = first or ended
    decode = ended - first
    return {
        "ttft_s": first - started,
        "total_s": ended - started,
        "tokens": tokens,
        "tokens_per_s": (tokens - 1) / decode if tokens > 1 and decode > 0 else 0.0,
    }


def _raw_stream(http: httpx.Client, settings: Settings, messages: list[dict[str, str]]) -> Iterator[str]:
    """The same request straight to the OpenAI-protocol endpoint, without our client or llama-index."""
    body = {
        "model": settings.llm_model,
        "messages": messages,
        "max_tokens": settings.llm_max_tokens,
        "temperature": settings.llm_temperature,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {settings.llm_api_key.get_secret_value()}"}
    url = f"{settings.effective_llm_base_url.rstrip('/')}/chat/completions"
    with http.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            delta = (choices[0].get("delta") or {}).get("content")
            if delta:
                yield delta


def _p50(runs: list[dict[str, float]]) -> dict[str, float]:
    return {
        key: round(statistics.median(run[key] for run in runs), 3)
        for key in ("ttft_s", "tokens_per_s", "total_s", "tokens")
    }


def _server_rss_gib(settings: Settings) -> float | None:
    pid = llm_server.status(settings).get("pid")
    if not pid:
        return None
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return round(total / 2**30, 2)


def _bench_settings(settings: Settings) -> Settings:
    """A private local server for the benchmark: own port and run folder, the shared converted model."""
    import socket

    with socket.socket() as probe:
        probe.bind((settings.llm_host, 0))
        port = probe.getsockname()[1]
    return settings.model_copy(
        update={
            "data_dir": settings.data_dir / "bench" / "llm",
            "llm_port": port,
            "llm_model_dir": llm_server.model_dir(settings).resolve(),
        }
    )


def run_llm_benchmark(settings: Settings, requests: int = 20, max_tokens: int = 128) -> dict[str, Any]:
    # A generous timeout: on a busy machine a slow answer is a figure to report, not an error.
    settings = settings.model_copy(
        update={"llm_max_tokens": max_tokens, "llm_timeout": max(settings.llm_timeout, 600.0)}
    )
    local = llm_server.is_local(settings)
    result: dict[str, Any] = {"requests": requests, "max_tokens": max_tokens}
    if local:
        settings = _bench_settings(settings)
        llm_server.install(settings)
        llm_server.stop(settings)
        started = time.perf_counter()
        llm_server.start(settings)
        result["cold_start_s"] = round(time.perf_counter() - started, 1)
    try:
        client = LLMClient(settings)
        prompts = make_prompts(client, 2 * requests + 2)
        result["server"] = settings.effective_llm_base_url
        result["model"] = settings.llm_model
        result["prompt_tokens_p50"] = statistics.median(client.count_tokens(p) for p in prompts)
        result["exact_token_counts"] = client.tokens.exact
        ours, baseline = [], []
        with httpx.Client(timeout=settings.llm_timeout, trust_env=False) as http:
            # One unmeasured request each: the first request after start-up warms caches.
            _timed_stream(client.stream(prompts[0]), client)
            _timed_stream(_raw_stream(http, settings, prompts[1]), client)
            for index in range(requests):  # alternate, so drifting machine load hits both alike
                ours.append(_timed_stream(client.stream(prompts[2 + 2 * index]), client))
                baseline.append(_timed_stream(_raw_stream(http, settings, prompts[3 + 2 * index]), client))
        result["client"] = _p50(ours)
        result["baseline_httpx"] = _p50(baseline)
        result["client_over_baseline"] = {
            "ttft": round(result["client"]["ttft_s"] / result["baseline_httpx"]["ttft_s"], 3),
            "tokens_per_s": round(
                result["client"]["tokens_per_s"] / result["baseline_httpx"]["tokens_per_s"], 3
            ),
        }
        result["server_rss_gib"] = _server_rss_gib(settings) if local else None
    finally:
        if local:
            llm_server.stop(settings)
    return result
