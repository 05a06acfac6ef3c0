"""File discovery: ids, symlinks (broken, loops), size limit, permissions, per-file reasons."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

from ingest.discovery import discover


def _tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.md").write_text("# B\nbeta")
    (root / "sub" / "deeper" / "c.html").write_text("<p>gamma</p>")
    (root / ".git").mkdir()
    (root / ".git" / "config.txt").write_text("hidden")
    (root / "empty.pdf").write_bytes(b"")
    (root / "image.png").write_bytes(b"\x89PNG....")
    (root / "broken.pdf").symlink_to(root / "missing.pdf")
    (root / "loop1.txt").symlink_to(root / "loop2.txt")
    (root / "loop2.txt").symlink_to(root / "loop1.txt")
    (root / "sub" / "back-to-root").symlink_to(root)  # a folder loop
    (root / "alias.txt").symlink_to(root / "a.txt")
    return root


def test_candidates_ids_and_reasons(tmp_path, settings):
    root = _tree(tmp_path / "docs")
    found = discover([root], settings)
    assert [f.doc_id for f in found.files] == ["docs/a.txt", "docs/alias.txt", "docs/sub/b.md", "docs/sub/deeper/c.html"]
    assert [f.relative for f in found.files][2] == "sub/b.md"
    assert found.files[1].path == root / "alias.txt"  # a symlink keeps its own path and id
    reasons = {e.doc_id: (e.kind, e.reason) for e in found.errors}
    assert reasons == {
        "docs/empty.pdf": ("error", "the file is empty"),
        "docs/image.png": ("unsupported", "files '.png' are not supported"),
        "docs/broken.pdf": ("error", "the symbolic link is broken (its target does not exist)"),
        "docs/loop1.txt": ("error", "the symbolic link leads into a loop of links"),
        "docs/loop2.txt": ("error", "the symbolic link leads into a loop of links"),
    }
    assert found.roots == [root]


def test_same_ids_for_relative_and_absolute_spellings(tmp_path, settings, monkeypatch):
    root = _tree(tmp_path / "docs")
    monkeypatch.chdir(tmp_path)
    relative = discover([Path("./docs/")], settings)
    absolute = discover([root], settings)
    assert [f.doc_id for f in relative.files] == [f.doc_id for f in absolute.files]


def test_single_file_and_missing_path(tmp_path, settings):
    (tmp_path / "note.txt").write_text("x")
    found = discover([tmp_path / "note.txt", tmp_path / "gone.txt"], settings)
    assert [(f.doc_id, f.relative) for f in found.files] == [("note.txt", "note.txt")]
    assert [e.reason for e in found.errors] == ["the file does not exist"]


def test_file_over_the_size_limit(tmp_path, settings):
    (tmp_path / "big.txt").write_text("x" * 3000)
    (tmp_path / "small.txt").write_text("x" * 100)
    found = discover([tmp_path], settings.model_copy(update={"max_file_mb": 0.001}))
    assert [f.relative for f in found.files] == ["small.txt"]
    assert found.errors[0].reason == "the file is 0.00286 MB, larger than the limit of 0.001 MB (setting max_file_mb)"


_DISCOVER = """
import json, sys
from ingest.discovery import discover
from rag.settings import Settings
found = discover([sys.argv[1]], Settings(_env_file=None, data_dir=sys.argv[2]))
print(json.dumps({"files": [f.relative for f in found.files], "errors": {e.doc_id: e.reason for e in found.errors}}))
"""


def _without_root_file_access() -> None:
    """Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH before exec: the child stays uid 0 but
    permission bits bind it, as they bind every normal user (tests run as root here)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_unreadable_file_and_folder(tmp_path):
    root = tmp_path / "docs"
    (root / "locked").mkdir(parents=True)
    (root / "open.txt").write_text("readable")
    (root / "secret.txt").write_text("unreadable")
    (root / "locked" / "inner.txt").write_text("hidden inside")
    os.chmod(root / "secret.txt", 0o000)
    os.chmod(root / "locked", 0o000)
    try:
        out = subprocess.run([sys.executable, "-c", _DISCOVER, str(root), str(tmp_path / "var")],
                             capture_output=True, text=True, cwd=Path(__file__).parents[2], check=True,
                             preexec_fn=_without_root_file_access)
    finally:
        os.chmod(root / "locked", 0o755)  # let pytest clean up
    result = json.loads(out.stdout)
    assert result["files"] == ["open.txt"]
    assert result["errors"] == {
        "docs/secret.txt": "the file cannot be read (permission denied)",
        "docs/locked": "the folder cannot be read (permission denied)",
    }
