"""Management of the local vLLM server without starting one: refusals, status, environment."""

from __future__ import annotations

import socket

import pytest

from rag import llm_server as serving
from tests.conftest import find_free_port


def test_status_when_nothing_runs(settings):
    local = settings.model_copy(update={"llm_port": find_free_port(), "llm_base_url": ""})

    info = serving.status(local)

    assert info["up"] is False and info["state"] == "down"
    assert info["model"] is None and "pid" not in info
    assert info["url"] == f"http://127.0.0.1:{local.llm_port}/v1"


def test_stop_when_nothing_runs(settings):
    assert serving.stop(settings) is False


def test_start_refuses_a_remote_base_url(settings):
    remote = settings.model_copy(update={"llm_base_url": "http://127.0.0.1:9/v1"})

    with pytest.raises(serving.LLMServerError, match="not the local server; nothing to start"):
        serving.start(remote)


def test_start_refuses_when_not_installed(settings, tmp_path):
    bare = settings.model_copy(update={"llm_venv_dir": tmp_path / "no-venv", "llm_base_url": ""})

    with pytest.raises(serving.LLMServerError, match="not installed; run `rag llm install`"):
        serving.start(bare)


def test_missing_model_is_reported(settings, tmp_path):
    empty = settings.model_copy(update={"llm_model_dir": tmp_path / "model"})

    assert serving.model_problem(empty) == f"the converted model is missing from {tmp_path / 'model'}"


def test_logs_before_any_start_explain_what_to_do(settings):
    with pytest.raises(serving.LLMServerError, match="no server log yet.*rag llm start"):
        list(serving.follow(serving.log_file(settings)))


def test_port_in_use_sees_a_listener_and_a_free_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert serving.port_in_use("127.0.0.1", listener.getsockname()[1])
    assert not serving.port_in_use("127.0.0.1", find_free_port())


def test_server_environment_is_offline_private_and_inside_the_data_folder(settings, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "must-not-pass")
    env = serving.server_env(settings)
    data_dir = str(settings.data_dir.resolve())

    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1"
    assert "OPENAI_API_KEY" not in env
    for name in ("VLLM_CACHE_ROOT", "VLLM_CONFIG_ROOT", "HF_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        assert env[name].startswith(data_dir), name


def test_the_model_runs_in_the_engine_process_unless_the_operator_says_otherwise(settings, monkeypatch):
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    assert serving.server_env(settings)["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # no busy-polling worker
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # a many-core server may want the pinned worker
    assert serving.server_env(settings)["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"


def test_ensure_running_only_probes_a_remote_server(settings):
    remote = settings.model_copy(update={"llm_base_url": f"http://127.0.0.1:{find_free_port()}/v1"})

    info = serving.ensure_running(remote)

    assert info["up"] is False and info["managed"] is False
    assert not serving.pid_file(remote).exists()


def test_server_root_strips_the_api_prefix():
    assert serving.server_root("http://127.0.0.1:8001/v1/") == "http://127.0.0.1:8001"
    assert serving.server_root("http://gpu-box:8000") == "http://gpu-box:8000"


def test_bfloat16_only_where_the_cpu_computes_it_natively(settings):
    from rag.embedding import cpu_has_native_bf16

    native = cpu_has_native_bf16()
    assert serving.server_dtype(settings) == ("bfloat16" if native else "float32")
    for forced in ("bfloat16", "float32"):
        assert serving.server_dtype(settings.model_copy(update={"llm_dtype": forced})) == forced
