"""Questions through the real API with the real vLLM server: /v1/query (JSON and SSE),
the stock OpenAI SDK against /v1/chat/completions and /v1/models, cancellation when the
client disconnects, and a 503 with sources when the model server is down."""

from __future__ import annotations

import json
import re
import time

import httpx
import openai
import pytest

from api_support import LiveServer, free_port, ingest, make_key
from rag.service import RagService
from rag.settings import Settings

pytestmark = pytest.mark.llm

HANDBOOK = (
    "Employee handbook\n\n"
    "Vacation. Every employee receives 27 days of paid vacation per year. Unused vacation days "
    "expire at the end of March of the following year.\n\n"
    "Travel. Train travel is booked in second class. Flights need the approval of a director.\n\n"
    "Equipment. New employees receive a laptop and a headset on their first day.\n"
).encode()
QUESTION = "How many days of paid vacation does an employee receive per year?"


@pytest.fixture(scope="module")
def server(tmp_path_factory, llm_server):
    base = Settings(data_dir=tmp_path_factory.mktemp("api-query") / "var", _env_file=None)
    settings = llm_server.configure(base).model_copy(update={"llm_max_tokens": 64})
    service = RagService(settings)
    with LiveServer(settings, service) as live:
        live.admin = make_key(settings, "admin", None, admin=True)
        live.user = make_key(settings, "staff", "staff")
        with live.client(live.admin) as http:
            live.doc_id = ingest(http, {"handbook.txt": HANDBOOK}, groups="staff")["files"][0]["doc_id"]
        yield live
    service.close()


def sse_events(lines) -> list[tuple[str, dict]]:
    """(event, data) pairs from SSE lines."""
    events, name = [], "message"
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, line[6:]))
            name = "message"
    return events


def metric(server, name: str, labels: str) -> float:
    with server.client(server.admin) as http:
        text = http.get("/metrics").text
    match = re.search(rf"^{name}\{{{re.escape(labels)}\}} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_query_answers_with_citations_and_timings(server):
    with server.client(server.user) as http:
        response = http.post("/v1/query", json={"question": QUESTION, "top_k": 3})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "answered" and answer["answer"].strip()
    assert answer["sources"] and all(s["doc_id"] == server.doc_id for s in answer["sources"])
    for citation in answer["citations"]:
        assert citation["doc_id"] == server.doc_id and citation["source"].endswith("handbook.txt")
    assert answer["timings"]["total"] > 0 and answer["timings"]["generate"] > 0
    assert metric(server, "rag_answers_total", 'status="answered"') >= 1


def test_query_streams_tokens_then_a_final_event(server):
    with server.client(server.user) as http:
        with http.stream("POST", "/v1/query", json={"question": QUESTION, "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response.iter_lines())
    names = [name for name, _ in events]
    assert names[-1] == "final" and names.count("final") == 1 and names[0] == "token"
    text = "".join(json.loads(data)["text"] for name, data in events if name == "token")
    final = json.loads(events[-1][1])
    assert text.strip() and final["status"] == "answered" and final["sources"]
    assert set(final["timings"]) >= {"retrieve", "first_token", "generate", "total"}


def test_stock_openai_sdk_works_unchanged(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.user, max_retries=0,
                           http_client=httpx.Client(trust_env=False))
    assert [m.id for m in client.models.list().data] == ["rag"]

    reply = client.chat.completions.create(
        model="rag", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}])
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason == "stop"
    content = reply.choices[0].message.content
    citations = reply.model_extra["citations"]
    assert content.strip() and reply.usage.completion_tokens > 0
    if citations:  # sources travel as a field and as footnotes in the text
        assert "\n\nSources:\n[" in content and "handbook.txt" in content
        assert all(c["doc_id"] == server.doc_id for c in citations)

    pieces, final = [], None
    stream = client.chat.completions.create(model="anything", messages=[{"role": "user", "content": QUESTION}],
                                            stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            if chunk.choices[0].finish_reason:
                final = chunk
        else:
            assert chunk.usage.total_tokens > 0
    assert final is not None and final.choices[0].finish_reason == "stop"
    assert "".join(pieces).strip() and isinstance(final.model_extra["citations"], list)

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="rag_wrong", max_retries=0,
                      http_client=httpx.Client(trust_env=False)).models.list()
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="rag", messages=[{"role": "assistant", "content": "hi"}])


def test_closing_a_stream_cancels_the_generation(server):
    long_question = "Describe in detail everything the handbook says about vacation, travel and equipment."
    for route, body in [("/v1/query", {"question": long_question, "stream": True}),
                        ("/v1/chat/completions", {"messages": [{"role": "user", "content": long_question}],
                                                  "stream": True})]:
        before = metric(server, "rag_generations_cancelled_total", f'route="{route}"')
        with server.client(server.user) as http:
            with http.stream("POST", route, json=body) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("data: ") and ('"text"' in line or '"content"' in line):
                        break  # the first token arrived: leave now
        deadline = time.monotonic() + 30
        while metric(server, "rag_generations_cancelled_total", f'route="{route}"') < before + 1:
            assert time.monotonic() < deadline, f"{route}: the server did not stop the generation"
            time.sleep(0.2)


def test_model_server_down_gives_503_with_sources(server, tmp_path):
    down = server.settings.model_copy(update={"llm_base_url": f"http://127.0.0.1:{free_port()}/v1",
                                              "llm_retries": 0, "llm_timeout": 10.0})
    service = RagService(down.model_copy(update={"data_dir": tmp_path / "var"}))
    try:
        with LiveServer(service.settings, service) as live:
            key = make_key(service.settings, "staff", "staff")
            with live.client(key) as http:
                ingest(http, {"handbook.txt": HANDBOOK})
                response = http.post("/v1/query", json={"question": QUESTION})
                assert response.status_code == 503
                body = response.json()
                assert body["status"] == "llm_unavailable" and body["sources"]
                assert "cannot reach the LLM server" in body["message"] and down.llm_base_url in body["message"]
                streamed = http.post("/v1/query", json={"question": QUESTION, "stream": True})
                assert streamed.status_code == 503 and streamed.json()["sources"]
                chat = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]})
                assert chat.status_code == 503 and "LLM server" in chat.json()["error"]["message"]
                ready = http.get("/readyz")
                assert ready.status_code == 503 and ready.json() == {"ready": False, "store": "ok", "llm": "unreachable"}
    finally:
        service.close()


def test_answers_beyond_the_concurrency_limit_wait_then_get_503(server, tmp_path):
    busy = server.settings.model_copy(update={"data_dir": tmp_path / "var", "api_max_concurrent_answers": 1,
                                              "api_request_timeout": 0.5})
    service = RagService(busy)
    try:
        with LiveServer(busy, service) as live:
            key = make_key(busy, "staff", "staff")
            slots = live.app.state.answer_slots
            with live.client(key) as http:
                ingest(http, {"handbook.txt": HANDBOOK})
                slots.acquire()  # the only slot is taken (as by an answer being written)
                try:
                    refused = http.post("/v1/query", json={"question": QUESTION})
                    assert refused.status_code == 503 and refused.headers["retry-after"] == "10"
                    assert "busy" in refused.json()["detail"]
                    streamed = http.post("/v1/query", json={"question": QUESTION, "stream": True})
                    assert streamed.status_code == 503
                    chat = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]})
                    assert chat.status_code == 503 and "busy" in chat.json()["error"]["message"]
                    assert http.post("/v1/search", json={"query": QUESTION}).status_code == 200  # no slot needed
                finally:
                    slots.release()
                # Streams give their slot back, also when the client leaves early.
                for _ in range(2):
                    with http.stream("POST", "/v1/query", json={"question": QUESTION, "stream": True}) as held:
                        assert held.status_code == 200
                        next(held.iter_lines())
                    deadline = time.monotonic() + 60
                    while (answer := http.post("/v1/query", json={"question": QUESTION})).status_code == 503:
                        assert time.monotonic() < deadline, "the stream did not give its slot back"
                    assert answer.status_code == 200
    finally:
        service.close()
