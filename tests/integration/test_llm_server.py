"""The real local vLLM server with the real SmolLM2 model: answers, streaming, management and faults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from rag import llm_server as serving
from rag.llm import LLMClient, LLMRequestError, LLMUnavailable
from rag.settings import Settings
from tests.conftest import find_free_port
from tests.vllm_metrics import finished_requests, running_requests, wait_until_idle

pytestmark = pytest.mark.llm

SYSTEM = "Answer the question using only the context. Answer in one short sentence."
FACT = [
    {"role": "system", "content": SYSTEM},
    {
        "role": "user",
        "content": "Context:\nThe Zorblat factory is located in the city of Lyon. It was founded in 1987 "
        "and employs 420 people.\n\nQuestion: In which city is the Zorblat factory located?",
    },
]
LONG_ANSWER = "Write a very long story about a dragon, with many chapters."
# The story's length must not depend on how this CPU rounds: the model may not stop before 1,500 tokens.
LONG = {"llm_max_tokens": 1500, "llm_sampling": {"min_tokens": 1500}}
RAG = [sys.executable, "-m", "rag.cli"]


def server_tree(settings) -> list[psutil.Process]:
    """The running server's API process and all its descendants (engine, workers)."""
    leader = psutil.Process(serving.status(settings)["pid"])
    return [leader, *leader.children(recursive=True)]


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` that still run (a zombie counts: nobody collected it)."""
    return [proc for proc in processes if proc.is_running()]


def run_cli(settings, *args: str) -> subprocess.CompletedProcess:
    """`rag <args>` in a child process configured through RAG_* variables like a user's shell."""
    env = dict(os.environ)
    env.update(
        RAG_DATA_DIR=str(settings.data_dir),
        RAG_LLM_PORT=str(settings.llm_port),
        RAG_LLM_BASE_URL="",
        RAG_LLM_MODEL_DIR=str(serving.model_dir(settings)),
    )
    return subprocess.run([*RAG, *args], env=env, capture_output=True, text=True, check=False)


# --- Answers through the client ------------------------------------------------


def test_answer_contains_the_fact_from_the_context(llm_server):
    client = LLMClient(llm_server.settings.model_copy(update={"llm_max_tokens": 48}))

    assert "Lyon" in client.complete(FACT)


def test_streaming_delivers_text_while_the_model_still_writes(llm_server):
    # min_tokens: seconds of decoding, however this CPU rounds and however fast it is.
    long = {"llm_max_tokens": 300, "llm_sampling": {"min_tokens": 300}}
    stream = LLMClient(llm_server.settings.model_copy(update=long)).stream(FACT)

    first = next(stream)
    # Text in hand while the request still runs: delivered as generated, not buffered to the end.
    assert running_requests(llm_server.base_url) == 1
    chunks = [first, *stream]
    assert "Lyon" in "".join(chunks)
    assert len(chunks) >= 5


def test_closing_the_stream_cancels_the_generation(llm_server):
    client = LLMClient(llm_server.settings.model_copy(update=LONG))
    finished_before = finished_requests(llm_server.base_url)
    stream = client.stream(LONG_ANSWER)
    next(stream), next(stream)
    assert running_requests(llm_server.base_url) == 1

    stream.close()

    assert wait_until_idle(llm_server.base_url) == 0  # uncancelled, 1,500 tokens take minutes
    assert finished_requests(llm_server.base_url) == finished_before  # aborted, not finished


def test_too_long_prompt_is_refused_clearly_and_truncation_makes_it_fit(llm_server):
    # A full context window takes a while to read on a busy CPU; the timeout is not under test.
    client = LLMClient(llm_server.settings.model_copy(update={"llm_max_tokens": 16, "llm_timeout": 600}))
    context = "The Zorblat factory makes gears and springs for clocks. " * 400
    assert client.tokens.exact  # the converted model's own tokenizer

    with pytest.raises(LLMRequestError, match="too long for the model's context window of 2048 tokens"):
        client.complete(context)

    question = "\nQuestion: What does it make?"
    fitted = client.tokens.truncate(context, client.prompt_budget - client.count_tokens(question)) + question
    assert client.fits(fitted)
    assert client.count_tokens(fitted) > client.prompt_budget - 10  # cut to the budget, not far below it
    assert client.complete(fitted)


def test_unknown_model_is_a_request_error(llm_server):
    client = LLMClient(llm_server.settings.model_copy(update={"llm_model": "not-served"}))

    with pytest.raises(LLMRequestError, match="does not serve the model 'not-served'"):
        client.complete("Hello")


def test_sampling_parameters_reach_the_server(llm_server):
    plain = LLMClient(llm_server.settings.model_copy(update={"llm_max_tokens": 60}))
    forced = LLMClient(llm_server.settings.model_copy(update={"llm_max_tokens": 60, "llm_sampling": {"min_tokens": 60}}))

    assert plain.tokens.count(plain.complete(FACT)) < 30  # one short sentence
    assert forced.tokens.count(forced.complete(FACT)) >= 50  # not allowed to stop before 60 tokens


def test_a_bad_sampling_parameter_is_a_request_error(llm_server):
    client = LLMClient(llm_server.settings.model_copy(update={"llm_sampling": {"repetition_penalty": -1}}))

    with pytest.raises(LLMRequestError, match=r"refused the request \(400\).*repetition_penalty.*RAG_LLM_SAMPLING"):
        client.complete("Hello")


def test_health_and_models(llm_server):
    client = LLMClient(llm_server.settings)

    assert client.health()
    assert client.models() == ["smollm2"]


# --- Management of the session's server ------------------------------------------


def test_status_reports_model_uptime_and_url(llm_server):
    first = serving.status(llm_server.settings)
    time.sleep(1.1)
    second = serving.status(llm_server.settings)

    assert first["up"] and first["state"] == "up"
    assert first["model"] == "smollm2"
    assert first["url"] == llm_server.base_url
    assert second["uptime_s"] > first["uptime_s"] > 0


def test_status_command_prints_json(llm_server):
    out = run_cli(llm_server.settings, "llm", "status", "--json")

    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["up"] and info["model"] == "smollm2" and info["pid"] > 0


def test_starting_again_keeps_the_running_server(llm_server):
    before = serving.status(llm_server.settings)["pid"]

    assert serving.start(llm_server.settings)["pid"] == before


def test_port_taken_by_another_process_is_refused(llm_server, settings):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        taken = llm_server.configure(settings).model_copy(update={"llm_port": port})

        with pytest.raises(serving.LLMServerError, match=f"port {port} is already in use by another process"):
            serving.start(taken)
    assert not serving.pid_file(taken).exists()


def test_port_taken_cli_error_is_one_sentence(llm_server, settings):
    mine = llm_server.configure(settings)  # same port as the session's server, other data folder
    out = run_cli(mine, "llm", "start")

    assert out.returncode == 1
    assert f"error: port {mine.llm_port} is already in use by another process" in out.stderr
    assert "Traceback" not in out.stderr
    assert serving.status(llm_server.settings)["up"]  # the running server is untouched


def test_missing_model_is_refused_with_the_fix(llm_server, settings, tmp_path):
    missing = llm_server.configure(settings).model_copy(update={"llm_model_dir": tmp_path / "nowhere"})

    with pytest.raises(serving.LLMServerError, match="missing.*run `rag llm install`"):
        serving.start(missing)


def test_corrupt_model_is_refused_then_repaired_by_install(llm_server, settings, tmp_path):
    # A copy of the converted model whose big weights file is a link to the shared one
    # (read-only use), and whose small config gets corrupted.
    shared = serving.model_dir(llm_server.settings)
    copy = tmp_path / "model"
    copy.mkdir()
    for item in shared.iterdir():
        if item.name == "model.safetensors":
            (copy / item.name).symlink_to(item)
        else:
            shutil.copy(item, copy / item.name)
    (copy / "config.json").write_text('{"broken": true}')
    corrupt = llm_server.configure(settings).model_copy(update={"llm_model_dir": copy})

    assert "config.json is corrupt" in serving.model_problem(corrupt)
    with pytest.raises(serving.LLMServerError, match="config.json is corrupt.*`rag llm install`"):
        serving.start(corrupt)

    serving.install(corrupt)  # converts the packaged model again

    assert serving.model_problem(corrupt) is None
    assert json.loads((copy / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert not (copy / "model.safetensors").is_symlink()
    assert shared.joinpath("model.safetensors").is_file()  # the shared model was not touched
    assert serving.model_problem(llm_server.settings) is None


# --- A server of its own: stop and crash -------------------------------------------


@pytest.fixture
def own_server(llm_server, tmp_path):
    """A second real server on its own port and data folder, for tests that stop or kill it."""
    own = llm_server.configure(Settings(_env_file=None, data_dir=tmp_path / "var"))
    own = own.model_copy(update={"llm_port": find_free_port()})
    serving.start(own)
    yield own
    serving.stop(own)


def test_stop_leaves_no_process_behind(own_server):
    tree = server_tree(own_server)
    commands = [" ".join(proc.cmdline()) for proc in tree]
    assert any("EngineCore" in c for c in commands), commands  # API server and engine at least
    # The model runs inside the engine: no separate worker busy-polling the CPU after each step.
    assert not any("Worker" in c for c in commands), commands
    # vLLM's IPC sockets live in the server's own temp folder, which goes with it.
    scratch = Path(json.loads(serving.pid_file(own_server).read_text())["scratch"])
    assert any(p.is_socket() for p in scratch.iterdir()), list(scratch.iterdir())

    assert serving.stop(own_server) is True
    assert not scratch.exists()

    assert still_running(tree) == []
    assert not psutil.pid_exists(tree[0].pid)  # collected: not even a zombie
    assert not serving.pid_file(own_server).exists()
    assert not serving.port_in_use(own_server.llm_host, own_server.llm_port)
    assert serving.status(own_server)["state"] == "down"
    assert serving.stop(own_server) is False


def test_server_killed_mid_stream_gives_a_clear_error_and_stop_cleans_up(own_server):
    client = LLMClient(own_server.model_copy(update=LONG))
    stream = client.stream(LONG_ANSWER)
    next(stream), next(stream)
    tree = server_tree(own_server)
    assert running_requests(own_server.effective_llm_base_url) == 1  # still generating

    tree[0].send_signal(signal.SIGKILL)  # the API server dies; its engine processes are orphaned
    tree[0].wait(timeout=30)
    received = []
    try:
        for piece in stream:
            received.append(piece)
    except LLMUnavailable as error:
        message = str(error)
    else:
        pytest.fail(f"the stream ended normally after the kill, {len(received)} more pieces")

    assert "stopped in the middle of an answer" in message
    assert own_server.effective_llm_base_url in message and "rag llm start" in message
    assert serving.status(own_server)["state"] == "down"
    serving.stop(own_server)  # also ends the engine processes the dead API server left behind
    assert still_running(tree) == []


def test_rag_llm_logs_shows_the_server_log(llm_server):
    out = run_cli(llm_server.settings, "llm", "logs", "-n", "5")

    assert out.returncode == 0
    shown = out.stdout.splitlines()
    assert len(shown) == 5
    assert set(shown) <= set(Path(serving.log_file(llm_server.settings)).read_text().splitlines())
