"""The LLM client's errors, retries and token budget, against loopback faults only.

The answers themselves are tested against the real server in tests/integration.
These faults (a server that never answers, one that hangs up at once) can't be
produced with a healthy vLLM, so a plain loopback socket plays them.
"""

from __future__ import annotations

import socket
import threading

import pytest
from pydantic import SecretStr

from rag.llm import CHARS_PER_TOKEN, TEMPLATE_MARGIN_TOKENS, LLMClient, LLMUnavailable, TokenCounter
from tests.conftest import find_free_port


class FaultyServer:
    """Accepts TCP connections on 127.0.0.1 and then either never answers or hangs up."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.accepted = 0
        self._open: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            conn.recv(65536)  # the request
            if self.behaviour == "hang up":
                conn.close()
            else:
                self._open.append(conn)  # silent: keep it open, never answer

    def close(self) -> None:
        self._listener.close()
        for conn in self._open:
            conn.close()


@pytest.fixture
def silent_server():
    server = FaultyServer("silent")
    yield server
    server.close()


@pytest.fixture
def hang_up_server():
    server = FaultyServer("hang up")
    yield server
    server.close()


def local_client(settings, port: int, **changes) -> LLMClient:
    """A client for 'the local server' on ``port`` (so the fix it suggests is `rag llm start`)."""
    return LLMClient(settings.model_copy(update={"llm_port": port, "llm_base_url": "", **changes}))


def test_unreachable_server_error_names_url_and_fix(settings):
    port = find_free_port()
    client = local_client(settings, port, llm_retries=0)

    with pytest.raises(LLMUnavailable) as error:
        client.complete("Hello")

    assert str(error.value) == (
        f"cannot reach the LLM server at http://127.0.0.1:{port}/v1; "
        "start it with `rag llm start` (check it with `rag llm status`)"
    )


def test_connection_failures_are_retried_a_bounded_number_of_times(settings, hang_up_server):
    client = local_client(settings, hang_up_server.port, llm_retries=2)

    with pytest.raises(LLMUnavailable, match="cannot reach the LLM server"):
        client.complete("Hello")

    assert hang_up_server.accepted == 3


def test_silent_server_times_out_once_without_retry(settings, silent_server):
    client = local_client(settings, silent_server.port, llm_timeout=1.0, llm_retries=2)

    with pytest.raises(LLMUnavailable) as error:
        client.complete("Hello")

    assert str(error.value).startswith(
        f"the LLM server at http://127.0.0.1:{silent_server.port}/v1 did not answer within 1 s (RAG_LLM_TIMEOUT)"
    )
    assert "rag llm start" in str(error.value)
    assert silent_server.accepted == 1


def test_silent_server_times_out_while_streaming(settings, silent_server):
    client = local_client(settings, silent_server.port, llm_timeout=1.0)

    with pytest.raises(LLMUnavailable, match="did not answer within 1 s"):
        list(client.stream("Hello"))


def test_remote_server_error_points_to_the_base_url_setting(settings):
    url = f"http://127.0.0.1:{find_free_port()}/v1"
    client = LLMClient(settings.model_copy(update={"llm_base_url": url, "llm_retries": 0}))

    with pytest.raises(LLMUnavailable) as error:
        client.complete("Hello")

    assert url in str(error.value)
    assert "RAG_LLM_BASE_URL" in str(error.value)
    assert "rag llm start" not in str(error.value)


def test_api_key_stays_out_of_reprs_dumps_and_errors(settings):
    secret = "s3cret-key-value"
    client = local_client(settings, find_free_port(), llm_api_key=SecretStr(secret), llm_retries=0)

    with pytest.raises(LLMUnavailable) as error:
        client.complete("Hello")

    shown = [repr(client.llm), client.llm.model_dump_json(), str(client.llm.to_dict()), str(error.value)]
    assert not any(secret in text for text in shown)
    assert client.llm.api_key == secret  # still sent to the server


def test_health_and_models_when_nothing_answers(settings):
    client = local_client(settings, find_free_port())

    assert client.health() is False
    assert client.models() == []


def test_token_estimate_without_the_model_tokenizer():
    counter = TokenCounter(None)

    assert not counter.exact
    assert counter.count("x" * 35) == 10
    assert counter.truncate("x" * 100, 10) == "x" * int(10 * CHARS_PER_TOKEN)
    assert counter.truncate("anything", 0) == ""


def test_remote_server_uses_the_estimate_and_budget_leaves_room_for_the_answer(settings):
    client = LLMClient(
        settings.model_copy(
            update={
                "llm_base_url": "http://127.0.0.1:9/v1",
                "llm_context_window": 4096,
                "llm_max_tokens": 512,
            }
        )
    )

    assert not client.tokens.exact
    assert client.prompt_budget == 4096 - 512 - TEMPLATE_MARGIN_TOKENS
    assert client.fits("short question")
    assert not client.fits("x" * int(client.prompt_budget * CHARS_PER_TOKEN))
