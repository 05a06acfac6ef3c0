"""Checks shared by every store engine: input validation, the store's metadata file, and the
single-process lock of the embedded stores."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.store.base import StoreCorrupt, StoreError, StoreLocked, StorePoint

META_FILE = "store.json"
LOCK_FILE = ".lock"


def validate_points(points: Sequence[StorePoint], dim: int) -> list[list[float]]:
    """Reject a whole batch before anything is written, naming the first bad point.

    Returns the dense vectors as plain float lists, the form both engines take."""
    for p in points:
        if len(p.dense) != dim:
            raise StoreError(
                f"point {p.id}: vector has {len(p.dense)} dimensions, the store expects {dim}"
            )
    try:
        matrix = np.asarray([p.dense for p in points], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"a vector holds something that is not a number ({exc})") from None
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        raise StoreError(f"point {points[int(np.argmin(finite))].id}: vector contains NaN or infinity")
    for p in points:
        if len(p.sparse.indices) != len(p.sparse.values):
            raise StoreError(f"point {p.id}: sparse vector indices and values differ in length")
        try:
            json.dumps(p.payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"point {p.id}: payload is not JSON-serialisable ({exc})") from None
    return matrix.tolist()


@dataclass
class StoreMeta:
    """What a store folder was created for; a mismatch is an error, not silent damage."""

    backend: str
    dim: int
    format: int = 1

    @classmethod
    def check_or_create(cls, path: Path, backend: str, dim: int, create: bool) -> StoreMeta:
        meta_path = path / META_FILE
        if not meta_path.exists():
            if path.exists() and any(p.name not in (LOCK_FILE,) for p in path.iterdir()):
                raise StoreCorrupt(
                    f"{path} is not empty but has no {META_FILE}: it is not a store folder "
                    "(or its metadata was lost). Move it away or point RAG_DATA_DIR elsewhere."
                )
            if not create:
                raise StoreError(
                    f"There is no store at {path} yet. Ingest documents first: rag ingest PATH"
                )
            path.mkdir(parents=True, exist_ok=True)
            meta = cls(backend=backend, dim=dim)
            tmp = meta_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(meta)))
            os.replace(tmp, meta_path)  # atomic: a crash never leaves half a metadata file
            return meta
        try:
            meta = cls(**json.loads(meta_path.read_text()))
        except (ValueError, TypeError) as exc:
            raise StoreCorrupt(f"{meta_path} is unreadable ({exc}); the store may be corrupt.") from None
        if meta.backend != backend:
            raise StoreError(
                f"The store at {path} was created by the '{meta.backend}' engine, not '{backend}'. "
                "Set RAG_STORE_BACKEND accordingly or use another data folder."
            )
        if meta.dim != dim:
            raise StoreError(
                f"The store at {path} holds {meta.dim}-dimensional vectors but the embedding model "
                f"gives {dim}. Re-ingest into a new data folder after changing models."
            )
        return meta


class FolderLock:
    """An exclusive, non-blocking lock on a store folder, released when the process ends."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise StoreLocked(
                f"The store at {path} is in use by another process (only one process may open "
                "the embedded store at a time; go through the API server, or stop the other process)."
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
