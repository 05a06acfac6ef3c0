"""Embedded store faults: a folder locked by another process, a corrupt or missing store.
Each gets a clear error naming the cause, and what is stored stays intact."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rag.settings import Settings
from rag.store.base import StoreCorrupt, StoreError, StoreLocked
from rag.store.factory import open_store
from tests.integration.test_store_contract import make_points


@pytest.fixture(params=["edge", "local"])
def cfg(request, tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "var", store_backend=request.param, _env_file=None)


def test_second_process_gets_a_clear_locked_error(cfg):
    store = open_store(cfg)
    store.upsert(make_points(n=24, docs=3))
    store.flush()
    code = textwrap.dedent(f"""
        from rag.settings import Settings
        from rag.store.factory import open_store
        from rag.store.base import StoreLocked
        try:
            open_store(Settings(data_dir={str(cfg.data_dir)!r}, store_backend={cfg.store_backend!r}, _env_file=None))
        except StoreLocked as exc:
            print("LOCKED:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOCKED:" in out.stdout and "in use by another process" in out.stdout, out.stderr
    assert store.count() == 24  # the owner is unaffected
    store.close()


def test_lock_is_released_on_close(cfg):
    open_store(cfg).close()
    open_store(cfg).close()


def test_same_process_second_open_is_refused(cfg):
    store = open_store(cfg)
    try:
        with pytest.raises(StoreLocked):
            open_store(cfg)
    finally:
        store.close()


def test_missing_store_without_create_says_ingest_first(cfg):
    with pytest.raises(StoreError, match="rag ingest"):
        open_store(cfg, create=False)
    assert not (cfg.store_dir / cfg.store_backend / "store.json").exists()


def test_folder_that_is_not_a_store_is_refused(cfg):
    folder = cfg.store_dir / cfg.store_backend
    folder.mkdir(parents=True)
    (folder / "something.txt").write_text("not a store")
    with pytest.raises(StoreCorrupt, match="not a store folder"):
        open_store(cfg)
    assert (folder / "something.txt").read_text() == "not a store"


def test_corrupt_metadata_is_reported(cfg):
    open_store(cfg).close()
    (cfg.store_dir / cfg.store_backend / "store.json").write_text("{garbage")
    with pytest.raises(StoreCorrupt, match="store.json"):
        open_store(cfg)


def test_dimension_mismatch_is_refused(cfg):
    store = open_store(cfg)
    store.upsert(make_points(n=12, docs=2))
    store.close()
    with pytest.raises(StoreError, match="384-dimensional"):
        open_store(cfg.model_copy(update={"embed_dim": 768}))
    store = open_store(cfg)
    assert store.count() == 12
    store.close()


def test_corrupt_edge_shard_is_reported(tmp_path):
    cfg = Settings(data_dir=tmp_path, store_backend="edge", _env_file=None)
    store = open_store(cfg)
    store.upsert(make_points(n=12, docs=2))
    store.close()
    shard = cfg.store_dir / "edge" / "shard"
    for f in shard.rglob("*.json"):
        f.write_text("\x00garbage")
    with pytest.raises(StoreCorrupt, match="could not be opened"):
        open_store(cfg)
