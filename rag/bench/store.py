"""`rag bench store`: the embedded store (Qdrant Edge) against qdrant-client local mode on
the same synthetic data.

Data: random low-rank 384-d unit vectors (real embeddings live near a low-dimensional
subspace, which is what makes HNSW recall realistic), BM25 vectors of Zipf-distributed
words, and a payload of 1-3 groups out of 100 per point. Each engine runs in its own child
process so its resident memory is its own.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.bench.child import run_in_child

DIM = 384
RANK = 48
GROUPS = 100
BATCH = 1000


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(RANK, DIM))
    vecs = rng.normal(size=(n, RANK)) @ basis + 0.15 * rng.normal(size=(n, DIM))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    vocab = np.array([f"w{i}" for i in range(5000)])
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    lengths = rng.integers(20, 120, size=n)
    texts = [" ".join(rng.choice(vocab, size=int(k), p=zipf)) for k in lengths]
    groups = [[f"g{int(g)}" for g in rng.choice(GROUPS, size=int(rng.integers(1, 4)), replace=False)] for _ in range(n)]
    queries = rng.normal(size=(512, RANK)) @ basis + 0.15 * rng.normal(size=(512, DIM))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    query_texts = [" ".join(rng.choice(vocab[:2000], size=4)) for _ in range(512)]
    return vecs, texts, groups, queries, query_texts


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
    }


def _timed(fn, n: int) -> dict[str, float]:
    samples = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t) * 1000)
    return _percentiles(samples)


def bench_engine(backend: str, n: int, n_queries: int, seed: int = 0) -> dict:
    """Run in a child process: build, query, reopen; report figures and peak RSS."""
    from rag import sparse
    from rag.settings import Settings
    from rag.store.base import StoreFilter, StorePoint, point_id
    from rag.store.factory import open_store

    vecs, texts, groups, queries, query_texts = make_data(n, seed)
    sparse_docs = sparse.encode_documents(texts)
    sparse_queries = [sparse.encode_query(t) for t in query_texts]
    points = [
        StorePoint(point_id("bench", "h", i), vecs[i], sparse_docs[i],
                   {"doc_id": f"d{i // 20}", "groups": groups[i], "content_hash": "h", "chunk_index": i})
        for i in range(n)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), store_backend=backend, _env_file=None)
        store = open_store(settings)
        t = time.perf_counter()
        for start in range(0, n, BATCH):
            store.upsert(points[start : start + BATCH])
        store.flush()
        upsert_s = time.perf_counter() - t
        t = time.perf_counter()
        store.optimize()
        build_s = time.perf_counter() - t

        q = lambda i: queries[i % len(queries)].tolist()
        flt = lambda i: StoreFilter(groups=[f"g{i % GROUPS}"])
        unfiltered = _timed(lambda i: store.query(q(i), None, limit=10, mode="dense"), n_queries)
        filtered = _timed(lambda i: store.query(q(i), None, limit=10, mode="dense", flt=flt(i)), n_queries)
        hybrid = _timed(
            lambda i: store.query(q(i), sparse_queries[i % len(sparse_queries)], limit=10, mode="hybrid", flt=flt(i)),
            n_queries,
        )
        recall = []
        for i in range(min(100, n_queries)):
            approx = {h.id for h in store.query(q(i), None, limit=10, mode="dense")}
            exact = {h.id for h in store.query(q(i), None, limit=10, mode="dense", exact=True)}
            recall.append(len(approx & exact) / 10)
        store.close()

        t = time.perf_counter()
        store = open_store(settings, create=False)
        store.query(q(0), None, limit=10, mode="dense")
        reopen_s = time.perf_counter() - t
        assert store.count() == n
        store.close()
    return {
        "engine": backend,
        "points": n,
        "upsert_points_per_s": round(n / upsert_s, 1),
        "hnsw_build_s": round(build_s, 2),
        "query_unfiltered": unfiltered,
        "query_group_filtered": filtered,
        "query_hybrid_filtered": hybrid,
        "recall_at_10": round(float(np.mean(recall)), 4),
        "reopen_s": round(reopen_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_store_benchmark(points: int, local_max: int, n_queries: int) -> dict:
    edge = run_in_child(bench_engine, "edge", points, n_queries)
    local_points = min(points, local_max)
    # Local mode is numpy brute force with filters in a Python loop: fewer queries keep it bearable.
    local = run_in_child(bench_engine, "local", local_points, min(n_queries, 50))
    result = {"edge": edge, "local_mode": local, "targets": {
        "group_filtered_p95_ms_max": 20.0, "recall_at_10_min": 0.95,
        "group_filtered_p95_ok": edge["query_group_filtered"]["p95_ms"] <= 20.0,
        "recall_ok": edge["recall_at_10"] >= 0.95,
    }}
    if local_points < points:
        result["note"] = (f"local mode measured on {local_points} points (capped by --local-max; "
                          "it is numpy brute force and slows down linearly)")
    if local_points == points:
        result["ratio_local_over_edge"] = {
            "group_filtered_p50": round(local["query_group_filtered"]["p50_ms"] / max(edge["query_group_filtered"]["p50_ms"], 1e-6), 1),
            "upsert_speedup": round(edge["upsert_points_per_s"] / local["upsert_points_per_s"], 1),
        }
    return result
