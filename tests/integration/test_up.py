"""`rag up` end to end: the real CLI, ingestion of the shipped samples, the API, the UI and the
session's real vLLM server; then a clean stop that leaves no process behind."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import find_free_port

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "Press Ctrl-C to stop everything."


def up_env(llm_server, data_dir: Path, api_port: int, ui_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    served = llm_server.settings
    env.update(
        RAG_DATA_DIR=str(data_dir),
        RAG_API_PORT=str(api_port),
        RAG_UI_PORT=str(ui_port),
        RAG_LLM_PORT=str(served.llm_port),
        RAG_LLM_MODEL=served.llm_model,
        RAG_LLM_MODEL_DIR=str(served.llm_model_dir or ""),
    )
    if not served.llm_model_dir:
        env.pop("RAG_LLM_MODEL_DIR")
    return env


def read_until_ready(proc: subprocess.Popen, timeout: float) -> str:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if READY_LINE in line:
            return "".join(seen)
    raise AssertionError(f"`rag up` did not come up (exit code {proc.poll()}):\n{''.join(seen)}")


@pytest.mark.llm
def test_rag_up_answers_from_the_samples_with_citations_and_stops_cleanly(llm_server, tmp_path):
    data_dir = tmp_path / "var"
    api_port, ui_port = find_free_port(), find_free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "up"],
        env=up_env(llm_server, data_dir, api_port, ui_port),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = read_until_ready(proc, timeout=600)
        key = (data_dir / "admin-key.txt").read_text().strip()
        assert key in output and f"http://127.0.0.1:{ui_port}" in output
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the API and the UI

        with httpx.Client(timeout=180, trust_env=False) as http:
            assert http.get(f"http://127.0.0.1:{ui_port}/_stcore/health").status_code == 200
            reply = http.post(
                f"http://127.0.0.1:{api_port}/v1/query",
                headers={"Authorization": f"Bearer {key}"},
                json={"question": "How many days of annual leave do employees get?"},
            )
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["status"] == "answered", answer
        assert answer["citations"], answer
        cited = {c["doc_id"] for c in answer["citations"]}
        assert any(doc.endswith("employee-handbook.md") for doc in cited), cited
        assert any("27 days" in s["text"] for s in answer["sources"]), answer["sources"]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
        # The model server was already running (the session's), so `rag up` left it alone.
        assert httpx.get(f"{llm_server.base_url.removesuffix('/v1')}/health", timeout=5).status_code == 200
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
