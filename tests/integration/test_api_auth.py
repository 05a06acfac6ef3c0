"""API keys and authentication against the real app under uvicorn: 401/403, keys made
and revoked by the CLI while the server runs, hashed private key file, no key in logs."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys

import pytest

from api_support import LiveServer, make_key
from rag.keys import KeyStore
from rag.service import RagService
from rag.settings import Settings

OPEN_ROUTES = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("api-auth") / "var", _env_file=None)
    service = RagService(settings)
    with LiveServer(settings, service, access_log=True) as live:
        yield live
    service.close()


def rag_cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"RAG_DATA_DIR": str(settings.data_dir)}
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], env=env, capture_output=True, text=True, timeout=120)


def routes(server) -> list[tuple[str, str]]:
    spec = server.client().get("/openapi.json").json()
    return [(method.upper(), path.replace("{doc_id}", "a/b.pdf").replace("{job_id}", "job_x"))
            for path, ops in spec["paths"].items() if path not in OPEN_ROUTES for method in ops]


def test_every_route_but_health_needs_a_valid_key(server):
    checked = routes(server)
    assert len(checked) >= 10
    for key in (None, "not-a-key", "rag_" + "x" * 43, "Bearer rag_abc"):
        with server.client(key) as http:
            for method, path in checked:
                response = http.request(method, path)
                assert response.status_code == 401, (method, path, key, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert "key" in response.json().get("detail", json.dumps(response.json())).lower()
    with server.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code in (200, 503)


def test_admin_only_routes_refuse_other_keys(server):
    user = make_key(server.settings, "metrics-user", "team")
    admin = make_key(server.settings, "metrics-admin", None, admin=True)
    with server.client(user) as http:
        response = http.get("/metrics")
        assert response.status_code == 403
        assert "admin" in response.json()["detail"]
        assert http.get("/v1/documents").status_code == 200
    with server.client(admin) as http:
        text = http.get("/metrics").text
        assert 'rag_http_requests_total{method="GET",route="/metrics",status="403"}' in text
        assert "rag_documents_stored" in text and "rag_chunks_stored" in text


def test_keys_made_and_revoked_by_the_cli_apply_without_restart(server):
    made = rag_cli(server.settings, "keys", "create", "--name", "cli-user", "--groups", "g1,g2", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    token = created["key"]
    assert token.startswith("rag_") and created["groups"] == ["g1", "g2"] and created["admin"] is False
    with server.client(token) as http:
        assert http.get("/v1/documents").status_code == 200

    listed = rag_cli(server.settings, "keys", "list", "--json")
    assert listed.returncode == 0
    assert token not in listed.stdout and "hash" not in listed.stdout
    assert any(k["name"] == "cli-user" for k in json.loads(listed.stdout))

    revoked = rag_cli(server.settings, "keys", "revoke", "cli-user")
    assert revoked.returncode == 0, revoked.stderr
    with server.client(token) as http:
        assert http.get("/v1/documents").status_code == 401


def test_key_cli_refuses_bad_requests_in_one_sentence(server):
    make_key(server.settings, "taken", "g1")
    for args, words in [
        (["--name", "taken", "--groups", "g1"], "already exists"),
        (["--name", "nogroups"], "at least one group"),
        (["--name", "badgroup", "--groups", "a b"], "not a valid group"),
    ]:
        result = rag_cli(server.settings, "keys", "create", *args)
        assert result.returncode == 1
        assert words in result.stderr and "Traceback" not in result.stderr
    result = rag_cli(server.settings, "keys", "revoke", "nobody")
    assert result.returncode == 1 and "no active key" in result.stderr


def test_key_file_holds_only_hashes_and_is_private(server):
    token = make_key(server.settings, "file-check", "g1")
    path = KeyStore.for_settings(server.settings).path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    assert token not in content and token[4:] not in content
    assert all(len(entry["hash"]) == 64 for entry in json.loads(content)["keys"])


def test_keys_never_reach_the_logs(server, caplog):
    token = make_key(server.settings, "log-check", "g1")
    wrong = "rag_" + "W" * 43
    with caplog.at_level(logging.DEBUG):
        with server.client(token) as http:
            assert http.get("/v1/documents").status_code == 200
            assert http.post("/v1/search", json={"query": 1}).status_code == 422
        with server.client(wrong) as http:
            assert http.get("/v1/documents").status_code == 401
    access = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert len(access) >= 3  # the access log is on, and it was captured
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert token not in text and wrong not in text
    assert "authorization" not in text.lower()
