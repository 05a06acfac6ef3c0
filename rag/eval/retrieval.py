"""`rag eval retrieval`: BEIR-format retrieval evaluation of dense, sparse (BM25) and hybrid.

The corpus goes into a throwaway store (a temporary data folder) the same way ingestion
stores documents: title + text, cut with the ingestion chunker when longer than the
embedding model's window, dense vectors from `rag.embedding.Embedder`, BM25 from
`rag.sparse`. Chunk hits are folded into documents by their best chunk.

Every mode queries the real store. Hybrid uses the settings' fusion (relative scores or
RRF), k and weights; a fourth row runs hybrid with the other fusion for comparison
(``hybrid-rrf`` or ``hybrid-relative``). The per-branch prefetch is at least the number of
hits asked for (100 documents for recall@100), so deep metrics are not cut by a small prefetch.

Tuning (``--tune``) grid-searches the dense weight, the prefetch depth and (for RRF) k on the
*train* qrels and then reports the test split with the best setting, so the test queries
never influence the choice.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import get_args

import numpy as np

from rag.eval.metrics import RANKING_METRICS, aggregate_to_documents, latency_summary, mean, ranking_scores
from rag.settings import Settings
from rag.sparse import encode_documents, encode_query
from rag.store.base import Fusion, StorePoint, VectorStore, point_id

MODES = ("dense", "sparse", "hybrid")
FUSIONS = get_args(Fusion)
DOC_DEPTH = 100  # documents ranked per query (recall@100)
CHUNK_DEPTH_FACTOR = 3  # chunk hits fetched per ranked document, to survive max-aggregation
TUNE_GRID = {
    "rrf_k": [2, 5, 10, 20, 40, 60, 100],
    "dense_weight": [0.5, 0.75, 1.0, 1.25, 1.5, 2.0],
    "prefetch": [50, 100, 300],
}


class DatasetError(ValueError):
    """A dataset folder that is not in the expected format."""


@dataclass
class BeirDataset:
    name: str
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> query id -> doc id -> relevance


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise DatasetError(f"{path} line {number} is not valid JSON") from None
    return rows


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if number == 1 and parts[0] == "query-id":
                continue
            if len(parts) < 3:
                raise DatasetError(f"{path} line {number}: expected 'query-id<TAB>corpus-id<TAB>score'")
            qrels.setdefault(parts[0], {})[parts[1]] = int(float(parts[2]))
    return qrels


def load_beir(folder: Path) -> BeirDataset:
    folder = Path(folder)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        if not (folder / name).is_file():
            raise DatasetError(f"{folder} is not a BEIR dataset: {name} is missing")
    corpus = {
        str(r["_id"]): (r.get("title") or "", r.get("text") or "") for r in _read_jsonl(folder / "corpus.jsonl")
    }
    queries = {str(r["_id"]): r["text"] for r in _read_jsonl(folder / "queries.jsonl")}
    qrels = {p.stem: _read_qrels(p) for p in sorted((folder / "qrels").glob("*.tsv"))}
    return BeirDataset(folder.name, corpus, queries, qrels)


# --- Index ---------------------------------------------------------------------------------


def document_passages(title: str, text: str, settings: Settings, embedder) -> list[str]:
    """The texts stored for one corpus document: itself, or its chunks when over the model's window."""
    from ingest.chunking import chunk_document
    from ingest.parsers.base import ParsedDocument, TextUnit

    full = f"{title}\n\n{text}".strip() if title else text.strip()
    if embedder.count_tokens(full) <= embedder.max_tokens:
        return [full]
    doc = ParsedDocument(units=[TextUnit(text=text)], format="text", title=title or None)
    # The title goes in front of every chunk, as a heading would, so each chunk stays on topic.
    return [f"{title}\n\n{c.text}" if title else c.text for c in chunk_document(doc, settings)]


def _cache_file(settings: Settings, embedder, texts: list[str]) -> Path:
    digest = hashlib.sha256()
    digest.update(embedder.model_id.encode())  # model folder and numeric precision
    for t in texts:
        digest.update(hashlib.sha256(t.encode()).digest())
    return settings.cache_dir / "eval" / f"dense-{digest.hexdigest()[:24]}.npy"


def embed_cached(settings: Settings, embedder, texts: list[str], progress: Callable[[str], None]) -> np.ndarray:
    """Dense vectors of ``texts``; cached under the data folder so re-runs skip the slow part."""
    cache = _cache_file(settings, embedder, texts)
    if cache.exists():
        progress(f"dense vectors from cache {cache}")
        return np.load(cache)
    started = time.perf_counter()
    batches = []
    step = 512
    for i in range(0, len(texts), step):
        batches.append(np.asarray(embedder.embed_documents(texts[i : i + step]), dtype=np.float32))
        done = min(i + step, len(texts))
        rate = done / (time.perf_counter() - started)
        progress(f"embedded {done}/{len(texts)} passages ({rate:.0f}/s)")
    vectors = np.concatenate(batches) if batches else np.zeros((0, embedder.dim), np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def build_index(
    dataset: BeirDataset, settings: Settings, embedder, store: VectorStore, progress: Callable[[str], None]
) -> dict:
    started = time.perf_counter()
    doc_ids: list[str] = []
    texts: list[str] = []
    for doc_id, (title, text) in dataset.corpus.items():
        for passage in document_passages(title, text, settings, embedder):
            doc_ids.append(doc_id)
            texts.append(passage)
    chunked = time.perf_counter()
    progress(f"{len(dataset.corpus)} documents -> {len(texts)} passages")
    dense = embed_cached(settings, embedder, texts, progress)
    embedded = time.perf_counter()
    sparse = encode_documents(texts)
    batch = 1024
    counts: dict[str, int] = {}
    for i in range(0, len(texts), batch):
        points = []
        for j in range(i, min(i + batch, len(texts))):
            index = counts.get(doc_ids[j], 0)
            counts[doc_ids[j]] = index + 1
            points.append(
                StorePoint(
                    point_id(doc_ids[j], "eval", index),
                    dense[j],
                    sparse[j],
                    {"doc_id": doc_ids[j], "groups": ["eval"], "text": texts[j], "chunk_index": index},
                )
            )
        store.upsert(points)
    store.optimize()
    store.flush()
    return {
        "documents": len(dataset.corpus),
        "passages": len(texts),
        "chunk_s": chunked - started,
        "embed_s": embedded - chunked,
        "store_s": time.perf_counter() - embedded,
    }


# --- Queries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HybridParams:
    rrf_k: int
    dense_weight: float
    sparse_weight: float
    prefetch: int
    fusion: str = "relative"

    @classmethod
    def from_settings(cls, s: Settings) -> HybridParams:
        return cls(s.rrf_k, s.hybrid_dense_weight, s.hybrid_sparse_weight, s.prefetch_k, s.hybrid_fusion)

    def describe(self) -> str:
        k = f" k {self.rrf_k}" if self.fusion == "rrf" else ""
        return (f"{self.fusion} fusion{k}, weights dense {self.dense_weight} / sparse {self.sparse_weight}, "
                f"prefetch {self.prefetch}")


def rank(store: VectorStore, dense, sparse, mode: str, params: HybridParams, depth: int) -> list[str]:
    """The ``depth`` best documents. Like the product, hybrid prefetches max(prefetch, hits asked)."""
    chunk_limit = depth * CHUNK_DEPTH_FACTOR
    hits = store.query(
        dense,
        sparse,
        limit=chunk_limit,
        mode=mode,
        prefetch_limit=max(params.prefetch, chunk_limit),
        fusion=params.fusion,
        rrf_k=params.rrf_k,
        weights=[params.dense_weight, params.sparse_weight],
    )
    return aggregate_to_documents([(h.payload["doc_id"], h.score) for h in hits], depth)


def scored_modes(params: HybridParams) -> dict[str, tuple[str, HybridParams]]:
    """Row name -> (store mode, parameters): the three modes as configured, then hybrid with
    the other fusion, so one run compares the two fusions on the same store."""
    other = next(f for f in FUSIONS if f != params.fusion)
    rows = {mode: (mode, params) for mode in MODES}
    rows[f"hybrid-{other}"] = ("hybrid", replace(params, fusion=other))
    return rows


def evaluate_split(
    store: VectorStore,
    query_vectors: dict[str, tuple],
    qrels: dict[str, dict[str, int]],
    modes: dict[str, tuple[str, HybridParams]],
    deep: bool = True,
) -> dict[str, dict]:
    """Per row of ``modes``: mean metrics, store latency, and per-query rankings.

    The @10 metrics come from a top-10 query, exactly as the product asks; recall@100 from
    a second, deep query (``deep=False`` skips it, e.g. while tuning).
    """
    out = {}
    for name, (mode, params) in modes.items():
        per_query, latencies = {}, []
        for qid, rels in qrels.items():
            dense, sparse = query_vectors[qid]
            t = time.perf_counter()
            top = rank(store, dense, sparse, mode, params, 10)
            latencies.append(time.perf_counter() - t)
            scores = ranking_scores(top, rels)
            if deep:
                scores["recall@100"] = ranking_scores(rank(store, dense, sparse, mode, params, DOC_DEPTH), rels)[
                    "recall@100"
                ]
            per_query[qid] = {"ranked": top, "latency_s": latencies[-1], **scores}
        out[name] = {
            "metrics": {name: mean([q[name] for q in per_query.values()]) for name in RANKING_METRICS},
            "latency": latency_summary(latencies),
            "queries": per_query,
        }
    return out


def tune_grid(fusion: str, rrf_k: int) -> dict[str, list]:
    """The settings tuning tries; RRF k only matters to RRF fusion."""
    return {**TUNE_GRID, "rrf_k": TUNE_GRID["rrf_k"] if fusion == "rrf" else [rrf_k]}


def tune_hybrid(store, query_vectors, qrels, base: HybridParams, progress) -> tuple[HybridParams, list[dict]]:
    """The grid point with the best train nDCG@10 (ties: the simpler, earlier setting)."""
    trials = []
    for k, w, prefetch in itertools.product(*tune_grid(base.fusion, base.rrf_k).values()):
        params = HybridParams(k, w, 1.0, prefetch, base.fusion)
        result = evaluate_split(store, query_vectors, qrels, {"hybrid": ("hybrid", params)}, deep=False)["hybrid"]
        trials.append({"rrf_k": k, "dense_weight": w, "prefetch": prefetch, "ndcg@10": result["metrics"]["ndcg@10"]})
    best = max(trials, key=lambda t: t["ndcg@10"])
    progress(f"tuning: best train nDCG@10 {best['ndcg@10']:.4f} with {best}")
    return HybridParams(best["rrf_k"], best["dense_weight"], 1.0, best["prefetch"], base.fusion), trials


def evaluate_retrieval(
    dataset_dir: Path,
    settings: Settings,
    *,
    split: str = "test",
    limit_queries: int | None = None,
    tune: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Index a BEIR dataset into a throwaway store and score every retrieval mode."""
    from rag.embedding import Embedder
    from rag.store.factory import open_store

    dataset = load_beir(dataset_dir)
    if split not in dataset.qrels:
        raise DatasetError(f"{dataset_dir} has no qrels/{split}.tsv")
    if tune and "train" not in dataset.qrels:
        raise DatasetError(f"--tune needs {dataset_dir}/qrels/train.tsv (tuning never looks at the test split)")
    embedder = Embedder(settings)
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        # The store is throwaway; the embedding cache stays in the real data folder.
        store_settings = settings.model_copy(update={"data_dir": Path(tmp), "store_backend": "edge", "qdrant_url": None})
        store = open_store(store_settings)
        try:
            index = build_index(dataset, settings, embedder, store, progress)

            def vectors_for(qrels):
                out = {}
                for qid in qrels:
                    text = dataset.queries[qid]
                    t = time.perf_counter()
                    dense = embedder.embed_query(text)
                    embed_s = time.perf_counter() - t
                    out[qid] = (dense, encode_query(text))
                    embed_times.append(embed_s)
                return out

            embed_times: list[float] = []
            test_qrels = _limited(dataset.qrels[split], dataset.queries, limit_queries)
            test_vectors = vectors_for(test_qrels)
            params = HybridParams.from_settings(settings)
            tuning = None
            if tune:
                train_qrels = _limited(dataset.qrels["train"], dataset.queries, None)
                progress(f"tuning hybrid on {len(train_qrels)} train queries")
                grid = tune_grid(params.fusion, params.rrf_k)
                params, trials = tune_hybrid(store, vectors_for(train_qrels), train_qrels, params, progress)
                tuning = {"split": "train", "grid": grid, "trials": trials, "best": params.__dict__}
            modes = scored_modes(params)
            progress(f"scoring {len(test_qrels)} {split} queries: {', '.join(modes)}")
            results = evaluate_split(store, test_vectors, test_qrels, modes)
        finally:
            store.close()
    return {
        "dataset": dataset.name,
        "split": split,
        "queries": len(test_qrels),
        "index": index,
        "embedder": embedder.model_id,
        "hybrid_params": params.__dict__,
        "query_embed_latency": latency_summary(embed_times),
        "modes": {m: {"metrics": r["metrics"], "latency": r["latency"]} for m, r in results.items()},
        "per_query": {
            qid: {
                "query": dataset.queries[qid],
                "relevant": sorted(test_qrels[qid]),
                **{m: results[m]["queries"][qid] for m in results},
            }
            for qid in test_qrels
        },
        "tuning": tuning,
    }


def _limited(qrels: dict, queries: dict, limit: int | None) -> dict:
    known = {q: r for q, r in qrels.items() if q in queries}
    if limit is not None:
        known = dict(list(known.items())[:limit])
    return known
