"""One contract for every store engine (in the style of Haystack's store mixins), plus a
congruence test: Edge and qdrant-client local mode must return the same ids in the same order.

The server engine joins the parametrisation when RAG_QDRANT_URL names a real Qdrant server.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from rag import sparse
from rag.settings import Settings
from rag.store.base import StoreError, StoreFilter, StorePoint, point_id
from rag.store.factory import open_store

DIM = 384
WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron "
    "pi rho sigma tau upsilon phi chi psi omega invoice budget travel policy"
).split()

BACKENDS = ["edge", "local"] + (["server"] if os.environ.get("RAG_QDRANT_URL") else [])


def make_points(n: int = 120, docs: int = 12, seed: int = 0, content_hash: str = "h1") -> list[StorePoint]:
    """Random unit vectors and random-length texts (distinct BM25 scores, no ties)."""
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    points = []
    per_doc = n // docs
    for i in range(n):
        doc = f"doc-{i % docs}"
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 40))))
        points.append(
            StorePoint(
                id=point_id(doc, content_hash, i // docs),
                dense=vecs[i].tolist(),
                sparse=sparse.encode_document(text),
                payload={
                    "doc_id": doc,
                    "source": f"{doc}.txt",
                    "groups": [f"g{i % docs % 3}", "all"] if i % docs % 5 == 0 else [f"g{i % docs % 3}"],
                    "content_hash": content_hash,
                    "chunk_index": i // docs,
                    "chunk_count": per_doc,
                    "page": 1 + (i // docs) % 4,
                    "text": text,
                },
            )
        )
    return points


@pytest.fixture(params=BACKENDS)
def store_settings(request, tmp_path):
    kwargs = {"data_dir": tmp_path / "var", "store_backend": request.param, "_env_file": None}
    if request.param == "server":
        kwargs["collection"] = f"contract_{uuid.uuid4().hex[:8]}"
    return Settings(**kwargs)


@pytest.fixture
def store(store_settings):
    s = open_store(store_settings)
    yield s
    s.close()


@pytest.fixture
def filled(store):
    points = make_points()
    store.upsert(points)
    return store, points


def test_upsert_and_count(filled):
    store, points = filled
    assert store.count() == len(points)
    assert store.count(StoreFilter(groups=["g1"])) == sum("g1" in p.payload["groups"] for p in points)
    assert store.count(StoreFilter(doc_ids=["doc-3", "doc-4"])) == 20


def test_upsert_same_ids_overwrites(filled):
    store, points = filled
    store.upsert(points[:10])
    assert store.count() == len(points)


def test_dense_query_matches_exact_search(filled):
    store, points = filled
    q = np.asarray(points[42].dense)
    hits = store.query(q.tolist(), None, limit=10, mode="dense", exact=True)
    matrix = np.asarray([p.dense for p in points])
    expected = [points[i].id for i in np.argsort(-(matrix @ q))[:10]]
    assert [h.id for h in hits] == expected
    assert hits[0].id == points[42].id and hits[0].score == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("fusion", ["rrf", "relative"])
def test_group_filter_is_applied_inside_the_query(filled, fusion):
    store, points = filled
    q = points[0].dense  # a g0 point: the best unfiltered hit is outside g2
    hits = store.query(q, sparse.encode_query("alpha beta"), limit=20, flt=StoreFilter(groups=["g2"]), fusion=fusion)
    assert len(hits) == 20  # the filter did not just remove hits from an unfiltered top-20
    assert all("g2" in h.payload["groups"] for h in hits)


def test_groups_any_of(filled):
    store, points = filled
    hits = store.query(points[0].dense, None, limit=120, mode="dense", flt=StoreFilter(groups=["g1", "all"]))
    expected = {p.id for p in points if {"g1", "all"} & set(p.payload["groups"])}
    assert {h.id for h in hits} == expected


def test_empty_groups_match_nothing(filled):
    store, points = filled
    flt = StoreFilter(groups=[])
    assert store.query(points[0].dense, sparse.encode_query("alpha"), limit=5, flt=flt) == []
    assert store.count(flt) == 0
    assert store.documents(flt) == {}


def test_doc_id_filter(filled):
    store, points = filled
    hits = store.query(points[0].dense, sparse.encode_query("alpha"), limit=50, flt=StoreFilter(doc_ids=["doc-7"]))
    assert hits and {h.payload["doc_id"] for h in hits} == {"doc-7"}


def test_sparse_query_ranks_keyword_matches(filled):
    store, points = filled
    hits = store.query(None, sparse.encode_query("invoice"), limit=10, mode="sparse")
    assert hits and all("invoice" in h.payload["text"].split() for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("fusion", ["rrf", "relative"])
def test_hybrid_finds_both_signals(filled, fusion):
    store, points = filled
    target = points[100]
    hits = store.query(target.dense, sparse.encode_query(target.payload["text"]), limit=5, fusion=fusion)
    assert hits[0].id == target.id


def test_relative_fusion_scales_each_branch_of_the_filtered_query(filled):
    store, points = filled
    q, words, flt = points[7].dense, sparse.encode_query("invoice budget alpha"), StoreFilter(groups=["g1"])
    dense = store.query(q, None, limit=30, mode="dense", flt=flt)
    bm25 = store.query(None, words, limit=30, mode="sparse", flt=flt)
    hits = store.query(q, words, limit=10, flt=flt, fusion="relative", prefetch_limit=30, weights=[2.0, 1.0])

    def scaled(branch, point):
        scores = [h.score for h in branch]
        found = [h.score for h in branch if h.id == point]
        return (found[0] - min(scores)) / (max(scores) - min(scores)) if found else 0.0

    assert len(hits) == 10 and all("g1" in h.payload["groups"] for h in hits)
    for h in hits:
        assert h.score == pytest.approx((2 * scaled(dense, h.id) + scaled(bm25, h.id)) / 3, abs=1e-6)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_documents_lists_hashes_and_counts(filled):
    store, points = filled
    docs = store.documents()
    assert len(docs) == 12
    d = docs["doc-3"]
    assert d.content_hash == "h1" and d.chunks == 10 and d.expected_chunks == 10 and d.complete
    assert d.source == "doc-3.txt" and d.pages == 4


def test_documents_flags_mixed_versions(filled):
    store, points = filled
    newer = [p for p in make_points(content_hash="h2") if p.payload["doc_id"] == "doc-5"][:3]
    store.upsert(newer)
    d = store.documents()["doc-5"]
    assert d.content_hash is None and not d.complete and d.hashes == {"h1", "h2"}
    store.delete_document("doc-5", keep_hash="h2")
    d = store.documents()["doc-5"]
    assert d.content_hash == "h2" and d.chunks == 3


def test_delete_document(filled):
    store, points = filled
    store.delete_document("doc-1")
    assert store.count() == len(points) - 10
    assert "doc-1" not in store.documents()
    assert store.count(StoreFilter(doc_ids=["doc-1"])) == 0


def test_set_payload_changes_groups_without_reembedding(filled):
    store, points = filled
    store.set_payload("doc-2", {"groups": ["finance"]})
    hits = store.query(points[2].dense, None, limit=50, mode="dense", flt=StoreFilter(groups=["finance"]))
    assert {h.payload["doc_id"] for h in hits} == {"doc-2"} and len(hits) == 10
    assert hits[0].id == points[2].id  # the vector is unchanged


def test_scroll_returns_payloads(filled):
    store, points = filled
    hits = store.scroll(StoreFilter(doc_ids=["doc-9"]))
    assert len(hits) == 10 and all(h.payload["doc_id"] == "doc-9" for h in hits)


def test_optimize_keeps_results(filled):
    store, points = filled
    before = [h.id for h in store.query(points[3].dense, None, limit=10, mode="dense", exact=True)]
    store.optimize()
    after = [h.id for h in store.query(points[3].dense, None, limit=10, mode="dense", exact=True)]
    assert before == after


def test_reopen_keeps_data(store_settings):
    points = make_points(n=60, docs=6)
    s = open_store(store_settings)
    s.upsert(points)
    s.close()
    s = open_store(store_settings, create=False)
    try:
        assert s.count() == 60
        assert set(s.documents()) == {f"doc-{i}" for i in range(6)}
    finally:
        s.close()


# --- bad input: a clear error and nothing stored is damaged -------------------------

def test_wrong_vector_size_is_refused_whole(filled):
    store, points = filled
    bad = make_points(n=3, docs=1, seed=9, content_hash="x")
    bad[1].dense = bad[1].dense[:100]
    with pytest.raises(StoreError, match="100 dimensions.*expects 384"):
        store.upsert(bad)
    assert store.count() == len(points)  # nothing of the batch was written


def test_non_json_payload_is_refused(filled):
    store, points = filled
    bad = make_points(n=2, docs=1, seed=3, content_hash="y")
    bad[0].payload["when"] = object()
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        store.upsert(bad)
    assert store.count() == len(points)


def test_nan_vector_is_refused(filled):
    store, points = filled
    bad = make_points(n=1, docs=1, seed=4, content_hash="z")
    bad[0].dense[0] = float("nan")
    with pytest.raises(StoreError, match="NaN"):
        store.upsert(bad)


def test_query_with_wrong_size_is_refused(filled):
    store, _ = filled
    with pytest.raises(StoreError, match="dimensions"):
        store.query([0.1] * 10, None, limit=3, mode="dense")


# --- congruence: same operations, same answers --------------------------------------

def ranking(hits) -> list[frozenset[str]]:
    """Ids in score order, where points with equal scores (RRF ties) form one unordered group.

    The last group is dropped: a tie cut by the limit may keep different members."""
    groups: dict[float, set[str]] = {}
    for h in hits:
        groups.setdefault(round(h.score, 5), set()).add(h.id)
    ordered = [frozenset(groups[k]) for k in sorted(groups, reverse=True)]
    return ordered[:-1]


def test_edge_and_local_mode_agree(tmp_path):
    points = make_points(n=400, docs=40, seed=11)
    stores = {
        b: open_store(Settings(data_dir=tmp_path / b, store_backend=b, _env_file=None))
        for b in ("edge", "local")
    }
    try:
        for s in stores.values():
            s.upsert(points)
            s.set_payload("doc-4", {"groups": ["g2"]})
        rng = np.random.default_rng(5)
        for trial in range(10):
            q = points[int(rng.integers(len(points)))]
            text = " ".join(rng.choice(WORDS, size=4))
            flt = StoreFilter(groups=["g2"]) if trial % 2 else None
            for mode in ("dense", "sparse", "hybrid"):
                results = [
                    ranking(s.query(q.dense, sparse.encode_query(text), limit=10, mode=mode, flt=flt, exact=True))
                    for s in stores.values()
                ]
                if mode == "hybrid":
                    # Points with equal BM25 scores are ranked in arbitrary order by each engine,
                    # so their fused RRF scores may differ: compare the fused top 10 as sets.
                    top = [set().union(*r) for r in results]
                    assert len(top[0] & top[1]) >= 0.8 * max(len(top[0]), len(top[1])), (mode, trial)
                else:
                    assert results[0] == results[1], (mode, trial)
        # Deletes are compared by counts only: Edge keeps deleted points in its BM25 IDF
        # statistics until segments are vacuumed, so sparse scores may differ slightly after them.
        for s in stores.values():
            s.delete_document("doc-3")
        counts = [s.count(StoreFilter(groups=["g2"])) for s in stores.values()]
        assert counts[0] == counts[1]
        docs = [{k: (v.content_hash, v.chunks) for k, v in s.documents().items()} for s in stores.values()]
        assert docs[0] == docs[1]
    finally:
        for s in stores.values():
            s.close()
