"""Document management through the real API (real ingestion, embedding and store):
uploads as background jobs with progress, listing, details, downloads, deletes, the
upload/delete rule, unsafe file names, size limits and malformed requests."""

from __future__ import annotations

import threading

import pytest

from api_support import LiveServer, ingest, make_key, upload, wait_for_job
from rag.service import RagService
from rag.settings import Settings

UPLOAD_LIMIT_MB = 0.5


def text_doc(topic: str, sentences: int = 12) -> bytes:
    body = " ".join(f"Sentence {i} of the {topic} notes explains one more detail about {topic}." for i in range(sentences))
    return f"{topic.title()} notes\n\n{body}\n".encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("api-docs") / "var", _env_file=None,
                        api_max_upload_mb=UPLOAD_LIMIT_MB, api_max_body_kb=16)
    service = RagService(settings)
    with LiveServer(settings, service) as live:
        live.admin = make_key(settings, "admin", None, admin=True)
        live.hr = make_key(settings, "hr-user", "hr")
        live.eng = make_key(settings, "eng-user", "eng,ops")
        yield live
    service.close()


def test_upload_runs_a_job_with_progress_and_per_file_results(server):
    with server.client(server.hr) as http:
        response = upload(http, {"leave.txt": text_doc("leave"), "payroll.txt": text_doc("payroll"),
                                 "diagram.xyz": b"\x00\x01 not a document", "empty.txt": b""})
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["groups"] == ["hr"]  # default: the key's groups
        assert sorted(accepted["files"]) == ["diagram.xyz", "empty.txt", "leave.txt", "payroll.txt"]
        job = wait_for_job(http, accepted["job_id"])
    assert job["state"] == "done"
    assert job["progress"]["files_total"] == job["progress"]["files_done"] == 4
    results = {f["name"]: f for f in job["files"]}
    assert results["leave.txt"]["status"] == "added" and results["leave.txt"]["chunks"] > 0
    assert results["payroll.txt"]["status"] == "added" and results["payroll.txt"]["doc_id"]
    for bad in ("diagram.xyz", "empty.txt"):
        assert results[bad]["status"] == "failed" and results[bad]["reason"]
        assert not (server.settings.documents_dir / "hr" / bad).exists()  # not kept: no document
    assert results["leave.txt"]["doc_id"] == "hr/leave.txt"
    # Only the uploader (and admins) see a job.
    with server.client(server.eng) as http:
        assert http.get(f"/v1/jobs/{job['id']}").status_code == 404
    with server.client(server.admin) as http:
        assert http.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]


def test_list_details_download_and_paging(server):
    with server.client(server.eng) as http:
        job = ingest(http, {f"runbook-{i}.txt": text_doc(f"runbook {i}") for i in range(3)}, groups="ops")
        doc_ids = sorted(f["doc_id"] for f in job["files"])

        page = http.get("/v1/documents", params={"name": "runbook", "limit": 2}).json()
        assert page["total"] == 3 and [d["doc_id"] for d in page["items"]] == doc_ids[:2]
        rest = http.get("/v1/documents", params={"name": "RUNBOOK", "offset": 2, "limit": 2}).json()
        assert [d["doc_id"] for d in rest["items"]] == doc_ids[2:]
        assert http.get("/v1/documents", params={"group": "ops"}).json()["total"] >= 3
        assert http.get("/v1/documents", params={"group": "hr"}).json()["total"] == 0  # not theirs

        details = http.get(f"/v1/documents/{doc_ids[0]}").json()
        assert details["doc_id"] == doc_ids[0] and details["groups"] == ["ops"]
        assert details["chunks"] >= 1 and details["complete"] is True and details["name"] == "runbook-0.txt"

        download = http.get(f"/v1/documents/{doc_ids[1]}/file")
        assert download.status_code == 200 and download.content == text_doc("runbook 1")
        assert 'filename="runbook-1.txt"' in download.headers["content-disposition"]

    with server.client(server.hr) as http:  # another group: hidden = missing
        for path in (f"/v1/documents/{doc_ids[0]}", f"/v1/documents/{doc_ids[0]}/file"):
            response = http.get(path)
            assert response.status_code == 404 and response.json() == {"detail": "No document with this id."}
        assert http.get("/v1/documents/no/such/doc.txt").json() == {"detail": "No document with this id."}


def test_upload_and_delete_rules(server):
    with server.client(server.eng) as http:
        refused = upload(http, {"secret.txt": text_doc("secret")}, groups="hr")
        assert refused.status_code == 403 and "groups it has" in refused.json()["detail"]
        job = ingest(http, {"shared-plan.txt": text_doc("shared plan")}, groups="eng")
        doc_id = job["files"][0]["doc_id"]
    with server.client(server.hr) as http:  # no shared group: cannot see, cannot delete
        assert http.delete(f"/v1/documents/{doc_id}").status_code == 404
    with server.client(server.admin) as http:
        assert http.get(f"/v1/documents/{doc_id}").status_code == 200
        job = ingest(http, {"admin-note.txt": text_doc("admin note")}, groups="finance")  # admins assign any group
        admin_doc = job["files"][0]["doc_id"]
    with server.client(server.eng) as http:
        stored = server.settings.documents_dir / "eng" / "shared-plan.txt"
        assert stored.is_file()
        deleted = http.delete(f"/v1/documents/{doc_id}")
        assert deleted.status_code == 200 and deleted.json() == {"doc_id": doc_id, "deleted": True, "file_removed": True}
        assert not stored.exists()
        assert http.get(f"/v1/documents/{doc_id}").status_code == 404
        assert http.delete(f"/v1/documents/{admin_doc}").status_code == 404
    with server.client(server.admin) as http:
        assert http.get(f"/v1/documents/{admin_doc}").status_code == 200


def test_unsafe_file_names_stay_inside_the_documents_folder(server):
    names = ["../../escape.txt", "..", "sub/dir\\win.txt", "line\nbreak.txt", ".hidden.txt", "x" * 300 + ".txt"]
    files = {name: text_doc(f"unsafe {i}") for i, name in enumerate(names)}
    with server.client(server.admin) as http:
        response = upload(http, files, groups="unsafe")
        assert response.status_code == 202, response.text
        stored = response.json()["files"]
        job = wait_for_job(http, response.json()["job_id"])
    assert stored[:5] == ["escape.txt", "upload", "win.txt", "line break.txt", "hidden.txt"]
    assert len(stored[5]) <= 150 and stored[5].endswith(".txt")
    folder = server.settings.documents_dir / "unsafe"
    kept = {f["name"] for f in job["files"] if f["status"] == "added"}
    assert kept == set(stored) - {"upload"}  # no extension: not a supported document
    assert {p.name for p in folder.iterdir()} == kept
    root = server.settings.data_dir.parent
    assert [p.parent for p in root.rglob("escape.txt")] == [folder]


def test_size_limits_answer_413_and_leave_nothing_behind(server):
    big = b"a" * int(UPLOAD_LIMIT_MB * (1 << 20) + 1024)
    with server.client(server.admin) as http:
        response = upload(http, {"big.txt": big})
        assert response.status_code == 413 and "512 KB" in response.json()["detail"]

        def chunked():  # no Content-Length: the limit applies while reading
            for _ in range(40):
                yield b" " * 1024

        response = http.post("/v1/search", content=chunked(), headers={"content-type": "application/json"})
        assert response.status_code == 413 and "16 KB" in response.json()["detail"]
        response = http.post("/v1/search", json={"query": "x" * 20_000})
        assert response.status_code == 413
    assert not any((server.settings.data_dir / "uploads").iterdir())
    assert not (server.settings.documents_dir / "everyone" / "big.txt").exists()


@pytest.mark.parametrize("kwargs, status, words", [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "not valid JSON"),
    ({"json": {}}, 422, "query"),
    ({"json": {"query": 42}}, 422, "valid string"),
    ({"json": {"query": "x", "top_k": 0}}, 422, "top_k"),
    ({"json": {"query": "x", "mode": "psychic"}}, 422, "mode"),
    ({"json": {"query": "x", "surprise": 1}}, 422, "surprise"),
    ({"json": {"query": "   "}}, 422, "empty"),
    ({"json": ["query"]}, 422, "body"),
])
def test_malformed_search_requests_get_a_clear_422(server, kwargs, status, words):
    with server.client(server.hr) as http:
        response = http.post("/v1/search", **kwargs)
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["detail"].lower()


def test_malformed_uploads_get_a_clear_4xx(server):
    with server.client(server.hr) as http:
        not_multipart = http.post("/v1/documents", json={"files": ["a"]})
        assert not_multipart.status_code == 415 and "multipart" in not_multipart.json()["detail"]
        no_files = http.post("/v1/documents", data={"groups": "hr"}, files={"note": (None, "text")})
        assert no_files.status_code == 422 and "at least one file" in no_files.json()["detail"]
        garbage = http.post("/v1/documents", content=b"--xyz\r\nnonsense",
                            headers={"content-type": "multipart/form-data; boundary=xyz"})
        assert garbage.status_code in (400, 422) and garbage.json()["detail"]
        bad_group = upload(http, {"a.txt": b"text"}, groups="no spaces allowed")
        assert bad_group.status_code == 422 and "group" in bad_group.json()["detail"]


def test_queries_are_served_while_an_upload_is_ingested(server):
    big = "\n\n".join(text_doc(f"archive part {i}", 40).decode() for i in range(60)).encode()
    with server.client(server.admin) as http:
        response = upload(http, {"archive.txt": big}, groups="archive")
        job_id = response.json()["job_id"]
        served_while_running = 0
        stop = threading.Event()
        while not stop.is_set():
            state = http.get(f"/v1/jobs/{job_id}").json()
            if state["state"] in ("done", "failed"):
                break
            if state["state"] == "running":
                assert http.post("/v1/search", json={"query": "runbook notes"}).status_code == 200
                assert http.get("/v1/documents").status_code == 200
                served_while_running += 1
        job = wait_for_job(http, job_id)
    assert job["state"] == "done" and job["files"][0]["status"] == "added"
    assert served_while_running >= 1
