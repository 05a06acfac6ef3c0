"""The web UI's API client and launcher, and one fault the real stack cannot produce on
demand: an answer stream that breaks after some tokens (a stdlib stub serves it)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rag.settings import Settings, get_settings
from ui.client import ApiClient, ApiError, parse_sse, path_of
from ui.launch import streamlit_command, streamlit_env

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"


def test_parse_sse_reads_events_and_multi_line_data():
    lines = ["event: token", 'data: {"text": "Hel"}', "", "event: token", "data: {\"text\":", "data: \"lo\"}", "",
             ": a comment", "event: final", "data: {}"]
    assert list(parse_sse(lines)) == [("token", '{"text": "Hel"}'), ("token", '{"text":\n"lo"}'), ("final", "{}")]


def test_document_ids_keep_their_slashes_and_escape_the_rest():
    assert path_of("staff/q3 report#1?.pdf") == "staff/q3%20report%231%3F.pdf"


def test_an_unreachable_api_is_one_plain_sentence():
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ApiClient(f"http://127.0.0.1:{port}", "rag_x")
    with pytest.raises(ApiError) as error:
        client.me()
    assert str(error.value).startswith("The API at http://127.0.0.1:") and "cannot be reached" in str(error.value)


def test_rag_ui_runs_streamlit_headless_private_and_on_the_configured_address(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, ui_host="127.0.0.1", ui_port=8999,
                        api_host="127.0.0.1", api_port=8123)
    command = streamlit_command(settings)
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("ui/app.py")
    for option in ("--server.address=127.0.0.1", "--server.port=8999", "--server.headless=true",
                   "--browser.gatherUsageStats=false", "--client.showErrorDetails=none"):
        assert option in command
    assert "--server.port=7000" in streamlit_command(settings, port=7000)
    assert streamlit_env(settings)["RAG_API_URL"] == "http://127.0.0.1:8123"


class BrokenStreamApi(BaseHTTPRequestHandler):
    """Answers /v1/me and /readyz, and streams two tokens then an error for /v1/query."""

    def log_message(self, *args):  # keep the test output clean
        pass

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/me":
            self.reply(200, {"key_id": "key_1", "name": "tess", "groups": ["staff"], "admin": False})
        else:
            self.reply(200, {"ready": True, "store": "ok", "llm": "ok"})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event, data in (("token", {"text": "Vacation is "}), ("token", {"text": "27 days"}),
                            ("error", {"detail": "the answer stopped: the model server went away"})):
            self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()


@pytest.fixture
def broken_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), BrokenStreamApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_client_stream_gives_the_tokens_then_the_reason_it_stopped(broken_api):
    events = ApiClient(broken_api, "rag_x").ask_stream("How long is vacation?")
    assert [next(events)["text"], next(events)["text"]] == ["Vacation is ", "27 days"]
    with pytest.raises(ApiError, match="the model server went away"):
        next(events)


def test_chat_keeps_the_partial_answer_and_says_why_it_stopped(broken_api, monkeypatch):
    monkeypatch.setenv("RAG_API_URL", broken_api)
    get_settings.cache_clear()
    try:
        at = AppTest.from_file(str(APP), default_timeout=30).run()
        at.text_input[0].input("rag_x")
        at.button[0].click().run()
        at.chat_input[0].set_value("How long is vacation?").run()
    finally:
        get_settings.cache_clear()
    assert not at.exception
    assert "Vacation is 27 days" in [m.value for m in at.markdown]
    assert len(at.error) == 1 and "the model server went away" in at.error[0].value
    # The failed turn is not sent as conversation with the next question.
    chat = at.session_state["chats"][at.session_state["open_chat"]]
    assert len(chat.messages) == 2 and chat.conversation() == []
