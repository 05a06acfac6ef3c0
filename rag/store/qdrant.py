"""qdrant-client engine: a Qdrant server or cluster (``url``), or qdrant-client's local mode
(``path``; numpy brute force, kept as the reference implementation in contract tests and
benchmarks, not for production).

Same named vectors, same BM25 sparse encoding and same RRF fusion as the Edge engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from rag.store.base import (
    INDEXED_FIELDS,
    Hit,
    StoreError,
    StoreFilter,
    StorePoint,
    VectorStore,
)
from rag.store.common import FolderLock, StoreMeta, validate_points

DENSE = "dense"
SPARSE = "bm25"


def _to_filter(flt: StoreFilter | None) -> models.Filter | None:
    if flt is None:
        return None
    must: list[models.Condition] = []
    if flt.groups is not None:
        must.append(models.FieldCondition(key="groups", match=models.MatchAny(any=list(flt.groups))))
    if flt.doc_ids is not None:
        must.append(models.FieldCondition(key="doc_id", match=models.MatchAny(any=list(flt.doc_ids))))
    return models.Filter(must=must) if must else None


def _doc_filter(doc_id: str, keep_hash: str | None = None) -> models.Filter:
    must_not = None
    if keep_hash is not None:
        must_not = [models.FieldCondition(key="content_hash", match=models.MatchValue(value=keep_hash))]
    return models.Filter(
        must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))],
        must_not=must_not,
    )


class QdrantClientStore(VectorStore):
    def __init__(
        self,
        collection: str,
        dim: int,
        *,
        url: str | None = None,
        path: Path | None = None,
        api_key: str | None = None,
        prefer_grpc: bool = False,
        timeout: float = 30.0,
        shard_number: int = 1,
        replication_factor: int = 1,
        write_consistency_factor: int = 1,
        hnsw_m: int = 16,
        hnsw_ef_construct: int = 100,
        hnsw_ef: int = 256,
        create: bool = True,
    ) -> None:
        if (url is None) == (path is None):
            raise StoreError("give exactly one of a Qdrant URL (server) or a folder (local mode)")
        self.collection = collection
        self.dim = dim
        self.hnsw_ef = hnsw_ef
        self._lock: FolderLock | None = None
        self.where = url or str(path)
        if path is not None:
            # Local mode keeps everything in one process, like Edge: same lock, same metadata.
            if not create:
                StoreMeta.check_or_create(Path(path), backend="local", dim=dim, create=False)
            self._lock = FolderLock(Path(path))
            try:
                StoreMeta.check_or_create(Path(path), backend="local", dim=dim, create=create)
                self.client = QdrantClient(path=str(Path(path) / "local"))
            except Exception:
                self._lock.release()
                raise
        else:
            self.client = QdrantClient(
                url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=int(timeout)
            )
        try:
            exists = self.client.collection_exists(collection)
            if exists:
                self._check_collection()
            elif not create:
                raise StoreError(f"Qdrant at {self.where} has no collection '{collection}'. "
                                 "Ingest documents first: rag ingest PATH")
            else:
                self._create_collection(
                    shard_number, replication_factor, write_consistency_factor, hnsw_m, hnsw_ef_construct
                )
        except (ResponseHandlingException, UnexpectedResponse, ConnectionError) as exc:
            self.close()
            raise StoreError(f"Qdrant at {self.where} is not reachable or refused the request ({exc}).") from None
        except StoreError:
            self.close()
            raise

    def _create_collection(self, shards: int, replicas: int, consistency: int, m: int, ef: int) -> None:
        self.client.create_collection(
            self.collection,
            vectors_config={DENSE: models.VectorParams(size=self.dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            shard_number=shards,
            replication_factor=replicas,
            write_consistency_factor=consistency,
            hnsw_config=models.HnswConfigDiff(m=m, ef_construct=ef),
        )
        for name in INDEXED_FIELDS:
            self.client.create_payload_index(self.collection, name, models.PayloadSchemaType.KEYWORD)

    def _check_collection(self) -> None:
        info = self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        size = vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None
        if size != self.dim:
            raise StoreError(
                f"Collection '{self.collection}' at {self.where} holds {size}-dimensional '{DENSE}' "
                f"vectors but the embedding model gives {self.dim}."
            )

    # --- writes -----------------------------------------------------------------
    def upsert(self, points: Sequence[StorePoint]) -> None:
        if not points:
            return
        dense = validate_points(points, self.dim)
        self.client.upsert(
            self.collection,
            points=[
                models.PointStruct(
                    id=p.id,
                    vector={
                        DENSE: vector,
                        SPARSE: models.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                    },
                    payload=p.payload,
                )
                for p, vector in zip(points, dense)
            ],
            wait=True,
        )

    def delete_document(self, doc_id: str, keep_hash: str | None = None) -> None:
        self.client.delete(
            self.collection, points_selector=models.FilterSelector(filter=_doc_filter(doc_id, keep_hash)), wait=True
        )

    def set_payload(self, doc_id: str, values: dict[str, Any]) -> None:
        self.client.set_payload(self.collection, payload=values, points=_doc_filter(doc_id), wait=True)

    # --- reads ------------------------------------------------------------------
    def _scroll_page(self, flt, fields, limit, offset):
        records, nxt = self.client.scroll(
            self.collection, scroll_filter=_to_filter(flt), limit=limit, offset=offset,
            with_payload=fields, with_vectors=False,
        )
        return [(str(r.id), r.payload or {}) for r in records], nxt

    def _count(self, flt: StoreFilter | None) -> int:
        return self.client.count(self.collection, count_filter=_to_filter(flt), exact=True).count

    def _query(self, dense, sparse, *, limit, flt, mode, prefetch_limit, rrf_k, rrf_weights, hnsw_ef, exact):
        q_filter = _to_filter(flt)
        params = models.SearchParams(hnsw_ef=hnsw_ef, exact=exact)
        sparse_q = models.SparseVector(indices=sparse.indices, values=sparse.values) if sparse else None
        if mode == "hybrid":
            result = self.client.query_points(
                self.collection,
                prefetch=[
                    models.Prefetch(query=dense, using=DENSE, limit=prefetch_limit, filter=q_filter, params=params),
                    models.Prefetch(query=sparse_q, using=SPARSE, limit=prefetch_limit, filter=q_filter),
                ],
                query=models.RrfQuery(rrf=models.Rrf(k=rrf_k, weights=rrf_weights)),
                query_filter=q_filter,
                limit=limit,
                with_payload=True,
            )
        else:
            result = self.client.query_points(
                self.collection,
                query=dense if mode == "dense" else sparse_q,
                using=DENSE if mode == "dense" else SPARSE,
                query_filter=q_filter,
                search_params=params,
                limit=limit,
                with_payload=True,
            )
        return [Hit(str(p.id), float(p.score), p.payload or {}) for p in result.points]

    # --- maintenance ------------------------------------------------------------
    def optimize(self) -> None:
        """The server builds its indexes by itself in the background."""

    def flush(self) -> None:
        """Server writes are acknowledged with wait=True; local mode persists on each write."""

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
            self.client = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
