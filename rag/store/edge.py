"""Qdrant Edge: the real Qdrant engine embedded in this process (the default store).

One shard folder under the data folder. Writes go to a write-ahead log, so a hard
kill loses nothing that `upsert` returned. HNSW is built by `optimize()`, which
ingestion calls once at the end of a run rather than per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from rag.store.base import (
    INDEXED_FIELDS,
    Hit,
    StoreCorrupt,
    StoreError,
    StoreFilter,
    StorePoint,
    VectorStore,
)
from rag.store.common import META_FILE, FolderLock, StoreMeta, validate_points

DENSE = "dense"
SPARSE = "bm25"


def _to_filter(flt: StoreFilter | None) -> qe.Filter | None:
    if flt is None:
        return None
    must: list[Any] = []
    if flt.groups is not None:
        must.append(qe.FieldCondition(key="groups", match=qe.MatchAny(any=list(flt.groups))))
    if flt.doc_ids is not None:
        must.append(qe.FieldCondition(key="doc_id", match=qe.MatchAny(any=list(flt.doc_ids))))
    return qe.Filter(must=must) if must else None


def _doc_filter(doc_id: str, keep_hash: str | None = None) -> qe.Filter:
    must_not = None
    if keep_hash is not None:
        must_not = [qe.FieldCondition(key="content_hash", match=qe.MatchValue(keep_hash))]
    return qe.Filter(
        must=[qe.FieldCondition(key="doc_id", match=qe.MatchValue(doc_id))], must_not=must_not
    )


def _explain_open_error(path: Path, exc: Exception) -> StoreError:
    text = str(exc)
    return StoreCorrupt(f"The store at {path} could not be opened ({text}). It may be corrupt: "
                        "restore it from a backup or move it away and re-ingest.")


class EdgeStore(VectorStore):
    def __init__(
        self,
        path: Path,
        dim: int,
        *,
        create: bool = True,
        hnsw_m: int = 16,
        hnsw_ef_construct: int = 100,
        hnsw_ef: int = 256,
    ) -> None:
        self.path = Path(path)
        self.dim = dim
        self.hnsw_ef = hnsw_ef
        if not create and not (self.path / META_FILE).exists():
            StoreMeta.check_or_create(self.path, backend="edge", dim=dim, create=False)
        self._lock = FolderLock(self.path)
        shard_dir = self.path / "shard"
        try:
            StoreMeta.check_or_create(self.path, backend="edge", dim=dim, create=create)
            if shard_dir.exists() and any(shard_dir.iterdir()):
                self._shard = qe.EdgeShard.load(str(shard_dir))
            else:
                config = qe.EdgeConfig(
                    vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
                    sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
                    hnsw_config=qe.HnswIndexConfig(
                        m=hnsw_m, ef_construct=hnsw_ef_construct, full_scan_threshold=10_000
                    ),
                )
                self._shard = qe.EdgeShard.create(str(shard_dir), config)
                for name in INDEXED_FIELDS:
                    self._shard.update(
                        qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword)
                    )
        except StoreError:
            self._lock.release()
            raise
        except Exception as exc:  # the engine raises plain RuntimeError/OSError with Rust text
            self._lock.release()
            raise _explain_open_error(self.path, exc) from None
        self._closed = False

    # --- writes -----------------------------------------------------------------
    def upsert(self, points: Sequence[StorePoint]) -> None:
        if not points:
            return
        dense = validate_points(points, self.dim)
        edge_points = [
            qe.Point(
                p.id,
                {
                    DENSE: vector,
                    SPARSE: qe.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                },
                p.payload,
            )
            for p, vector in zip(points, dense)
        ]
        self._shard.update(qe.UpdateOperation.upsert_points(edge_points))

    def delete_document(self, doc_id: str, keep_hash: str | None = None) -> None:
        self._shard.update(qe.UpdateOperation.delete_points_by_filter(_doc_filter(doc_id, keep_hash)))

    def set_payload(self, doc_id: str, values: dict[str, Any]) -> None:
        self._shard.update(qe.UpdateOperation.set_payload_by_filter(_doc_filter(doc_id), values))

    # --- reads ------------------------------------------------------------------
    def _scroll_page(self, flt, fields, limit, offset):
        records, nxt = self._shard.scroll(
            qe.ScrollRequest(offset=offset, limit=limit, filter=_to_filter(flt), with_payload=fields)
        )
        return [(str(r.id), r.payload or {}) for r in records], nxt

    def _count(self, flt: StoreFilter | None) -> int:
        return self._shard.count(qe.CountRequest(filter=_to_filter(flt), exact=True))

    def _query(self, dense, sparse, *, limit, flt, mode, prefetch_limit, rrf_k, rrf_weights, hnsw_ef, exact):
        edge_filter = _to_filter(flt)
        params = qe.SearchParams(hnsw_ef=hnsw_ef, exact=exact)
        dense_q = qe.Query.Nearest(dense, using=DENSE) if dense is not None else None
        sparse_q = (qe.Query.Nearest(qe.SparseVector(sparse.indices, sparse.values), using=SPARSE)
                    if sparse is not None else None)
        if mode == "hybrid":
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[
                    qe.Prefetch(limit=prefetch_limit, query=dense_q, filter=edge_filter, params=params),
                    qe.Prefetch(limit=prefetch_limit, query=sparse_q, filter=edge_filter),
                ],
                query=qe.Fusion.Rrf(k=rrf_k, weights=rrf_weights),
                filter=edge_filter,
                with_payload=True,
            )
        else:
            request = qe.QueryRequest(
                limit=limit,
                query=dense_q if mode == "dense" else sparse_q,
                filter=edge_filter,
                params=params,
                with_payload=True,
            )
        return [Hit(str(p.id), float(p.score), p.payload or {}) for p in self._shard.query(request)]

    # --- maintenance ------------------------------------------------------------
    def optimize(self) -> None:
        self._shard.optimize()

    def flush(self) -> None:
        self._shard.flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._shard.flush()
            self._shard.close()
            self._lock.release()
