"""The server engine (qdrant-client with url=) against a stdlib Qdrant REST stub on loopback:
settings reach the wire (API key, shards, replication, indexes, IDF) and results round-trip."""

from __future__ import annotations

import pytest

from rag import sparse
from rag.settings import Settings
from rag.store.base import StoreError, StoreFilter
from rag.store.factory import open_store
from tests.integration.test_store_contract import make_points
from tests.qdrant_stub import QdrantStub


def server_settings(tmp_path, url: str, **kw) -> Settings:
    return Settings(
        data_dir=tmp_path / "var", qdrant_url=url, qdrant_api_key="s3cret", qdrant_shard_number=3,
        qdrant_replication_factor=2, _env_file=None, **kw,
    )


def test_collection_created_with_cluster_settings(tmp_path):
    with QdrantStub(api_key="s3cret") as stub:
        store = open_store(server_settings(tmp_path, stub.url))
        store.close()
        create = next(b for m, p, h, b in stub.requests if m == "PUT" and p.split("?")[0] == "/collections/documents")
        assert create["shard_number"] == 3 and create["replication_factor"] == 2
        assert create["vectors"]["dense"]["size"] == 384
        assert create["sparse_vectors"]["bm25"]["modifier"] == "idf"
        indexed = {b["field_name"] for m, p, h, b in stub.requests if p.startswith("/collections/documents/index")}
        assert indexed == {"groups", "doc_id"}
        assert all(h.get("api-key") == "s3cret" for _, _, h, _ in stub.requests)


def test_round_trip_through_the_server_engine(tmp_path):
    points = make_points(n=60, docs=6)
    with QdrantStub(api_key="s3cret") as stub:
        store = open_store(server_settings(tmp_path, stub.url))
        store.upsert(points)
        assert store.count() == 60
        assert store.count(StoreFilter(groups=["g1"])) == sum("g1" in p.payload["groups"] for p in points)
        flt = StoreFilter(groups=points[4].payload["groups"][:1])
        words = sparse.encode_query(points[4].payload["text"])
        hits = store.query(points[4].dense, words, limit=5, flt=flt, fusion="rrf")
        assert hits[0].id == points[4].id
        query = next(b for m, p, h, b in stub.requests if p.endswith("/points/query"))
        assert query["filter"]["must"][0]["match"]["any"] == points[4].payload["groups"][:1]
        assert [pre["using"] for pre in query["prefetch"]] == ["dense", "bm25"]
        assert query["query"]["rrf"]["k"] == 60
        # Relative fusion: one filtered query per side, fused here.
        stub.requests.clear()
        assert store.query(points[4].dense, words, limit=5, flt=flt)[0].id == points[4].id
        queries = [b for m, p, h, b in stub.requests if p.endswith("/points/query")]
        assert sorted(q["using"] for q in queries) == ["bm25", "dense"]
        assert all(q["filter"]["must"][0]["match"]["any"] == flt.groups for q in queries)
        docs = store.documents()
        assert set(docs) == {f"doc-{i}" for i in range(6)} and docs["doc-2"].chunks == 10
        store.set_payload("doc-2", {"groups": ["hr"]})
        assert store.count(StoreFilter(groups=["hr"])) == 10
        store.delete_document("doc-2")
        assert store.count() == 50
        store.close()


def test_existing_collection_is_reused_and_checked(tmp_path):
    with QdrantStub() as stub:
        s = Settings(data_dir=tmp_path, qdrant_url=stub.url, _env_file=None)
        open_store(s).close()
        open_store(s).close()  # reuse, no second create
        creates = [p for m, p, h, b in stub.requests if m == "PUT" and p.split("?")[0] == "/collections/documents"]
        assert len(creates) == 1
        with pytest.raises(StoreError, match="384"):
            open_store(Settings(data_dir=tmp_path, qdrant_url=stub.url, embed_dim=768, _env_file=None))


def test_wrong_api_key_is_a_clear_error(tmp_path):
    with QdrantStub(api_key="right") as stub:
        with pytest.raises(StoreError, match="not reachable or refused"):
            open_store(Settings(data_dir=tmp_path, qdrant_url=stub.url, qdrant_api_key="wrong", _env_file=None))


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="127.0.0.1:9"):
        open_store(Settings(data_dir=tmp_path, qdrant_url="http://127.0.0.1:9", qdrant_timeout=2, _env_file=None))


def test_missing_collection_without_create(tmp_path):
    with QdrantStub() as stub:
        with pytest.raises(StoreError, match="Ingest documents first"):
            open_store(Settings(data_dir=tmp_path, qdrant_url=stub.url, _env_file=None), create=False)
