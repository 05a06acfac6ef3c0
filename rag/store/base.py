"""The one vector-store interface the application uses, and the errors it raises.

Engines (Qdrant Edge embedded, qdrant-client server/local) implement `VectorStore`;
`rag.store.factory.open_store(settings)` picks one. Every engine passes the same
contract tests (tests/integration/test_store_contract.py).

A point is one chunk: a dense vector, a sparse (BM25) vector and a JSON payload.
Payload fields the app relies on: doc_id, source, page, heading, groups, content_hash,
chunk_index, chunk_count, text, start, end.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from rag.store.fusion import relative_score_fusion

QueryMode = Literal["hybrid", "dense", "sparse"]
Fusion = Literal["relative", "rrf"]

# Payload fields that get keyword indexes (the access filter and per-document operations).
INDEXED_FIELDS = ("groups", "doc_id")
SCROLL_PAGE = 2048
# Fields read when listing documents (keeps scrolls light).
DOCUMENT_FIELDS = ["doc_id", "content_hash", "source", "path", "groups", "chunk_count", "page", "title", "recipe"]


class StoreError(RuntimeError):
    """A store problem explained in one plain sentence."""


class StoreLocked(StoreError):
    pass


class StoreCorrupt(StoreError):
    pass


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass
class StorePoint:
    id: str
    dense: Sequence[float]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


@dataclass
class DocumentInfo:
    doc_id: str
    content_hash: str | None  # None when chunks of several versions coexist (an interrupted run)
    source: str
    groups: list[str]
    chunks: int  # points stored
    expected_chunks: int  # chunk_count written with them; differs after an interrupted run
    pages: int
    title: str | None = None
    path: str | None = None  # where the original file was read from (downloads, --prune)
    hashes: set[str] = field(default_factory=set)
    # How its chunks were made (embedding model and chunk settings, see ingest.pipeline.recipe);
    # empty for points written before recipes were recorded.
    recipes: set[str] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return self.content_hash is not None and self.chunks == self.expected_chunks


@dataclass(frozen=True)
class StoreFilter:
    """Conditions evaluated inside the engine's query (never after it)."""

    groups: Sequence[str] | None = None  # any-of; an empty list matches nothing
    doc_ids: Sequence[str] | None = None  # in

    @property
    def matches_nothing(self) -> bool:
        return (self.groups is not None and len(self.groups) == 0) or (
            self.doc_ids is not None and len(self.doc_ids) == 0
        )


def point_id(doc_id: str, content_hash: str, chunk_index: int) -> str:
    """Stable id: re-ingesting the same bytes overwrites, a new version gets new ids."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{doc_id}\x00{content_hash}\x00{chunk_index}"))


def aggregate_documents(payloads: Iterable[dict[str, Any]]) -> dict[str, DocumentInfo]:
    """Fold chunk payloads into one DocumentInfo per doc_id (shared by every engine)."""
    docs: dict[str, DocumentInfo] = {}
    for p in payloads:
        doc_id = p.get("doc_id")
        if doc_id is None:
            continue
        info = docs.get(doc_id)
        if info is None:
            info = docs[doc_id] = DocumentInfo(
                doc_id=doc_id,
                content_hash=p.get("content_hash"),
                source=p.get("source", ""),
                groups=list(p.get("groups") or []),
                chunks=0,
                expected_chunks=int(p.get("chunk_count") or 0),
                pages=0,
                title=p.get("title"),
                path=p.get("path"),
            )
        info.chunks += 1
        info.hashes.add(p.get("content_hash"))
        if p.get("recipe"):
            info.recipes.add(p["recipe"])
        info.pages = max(info.pages, int(p.get("page") or 0))
    for info in docs.values():
        if len(info.hashes) > 1:
            info.content_hash = None
    return docs


class VectorStore(ABC):
    """What the application needs from a vector store."""

    dim: int
    hnsw_ef: int = 256

    @abstractmethod
    def upsert(self, points: Sequence[StorePoint]) -> None:
        """Insert or replace points. Validates sizes and payloads before writing anything."""

    @abstractmethod
    def delete_document(self, doc_id: str, keep_hash: str | None = None) -> None:
        """Delete a document's points; with keep_hash, only those of other versions."""

    @abstractmethod
    def set_payload(self, doc_id: str, values: dict[str, Any]) -> None:
        """Update payload fields (e.g. groups) of every point of a document, no re-embedding."""

    # --- reads: the checks every engine shares live here; engine work in the _methods ----
    def documents(self, flt: StoreFilter | None = None) -> dict[str, DocumentInfo]:
        """Every document with its content hash and chunk count."""
        if flt is not None and flt.matches_nothing:
            return {}
        return aggregate_documents(payload for _, payload in self._scroll_all(flt, DOCUMENT_FIELDS, None))

    def scroll(self, flt: StoreFilter | None = None, limit: int = 1000) -> list[Hit]:
        """Points matching a filter in id order (score 0), e.g. a document's chunks."""
        if flt is not None and flt.matches_nothing:
            return []
        return [Hit(pid, 0.0, payload) for pid, payload in self._scroll_all(flt, True, limit)]

    def count(self, flt: StoreFilter | None = None) -> int:
        """Number of points matching the filter."""
        if flt is not None and flt.matches_nothing:
            return 0
        return self._count(flt)

    def query(
        self,
        dense: Sequence[float] | None,
        sparse: SparseVector | None,
        *,
        limit: int,
        flt: StoreFilter | None = None,
        mode: QueryMode = "hybrid",
        prefetch_limit: int = 50,
        fusion: Fusion = "relative",
        rrf_k: int = 60,
        weights: Sequence[float] | None = None,
        hnsw_ef: int | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """Best points first.

        Hybrid fuses the dense and sparse rankings (``prefetch_limit`` candidates each,
        ``weights`` dense/sparse): ``rrf`` inside the engine, ``relative`` by scaled scores
        (`rag.store.fusion`). The filter is part of every engine query either way.
        """
        if flt is not None and flt.matches_nothing:
            return []
        dense_list = None
        if mode in ("hybrid", "dense"):
            if dense is None:
                raise StoreError("a dense query vector is required for this mode")
            if len(dense) != self.dim:
                raise StoreError(f"query vector has {len(dense)} dimensions, the store expects {self.dim}")
            dense_list = [float(x) for x in dense]
        if mode in ("hybrid", "sparse"):
            if sparse is None:
                raise StoreError("a sparse query vector is required for this mode")
            if mode == "sparse" and not sparse.indices:
                return []  # no known word in the question: nothing can match
        run = partial(self._query, flt=flt, prefetch_limit=prefetch_limit, rrf_k=rrf_k,
                      hnsw_ef=hnsw_ef or self.hnsw_ef, exact=exact)
        weights = list(weights) if weights else None
        if mode == "hybrid" and fusion == "relative":
            dense_hits = run(dense_list, None, limit=prefetch_limit, mode="dense", rrf_weights=None)
            sparse_hits = run(None, sparse, limit=prefetch_limit, mode="sparse", rrf_weights=None) if sparse.indices else []
            return relative_score_fusion(dense_hits, sparse_hits, weights, limit)
        return run(dense_list, sparse, limit=limit, mode=mode, rrf_weights=weights)

    def _scroll_all(self, flt: StoreFilter | None, fields: list[str] | bool, limit: int | None):
        """(id, payload) pairs, page by page, up to ``limit`` (None = all)."""
        offset, got = None, 0
        while True:
            page = SCROLL_PAGE if limit is None else min(SCROLL_PAGE, limit - got)
            records, offset = self._scroll_page(flt, fields, page, offset)
            yield from records
            got += len(records)
            if offset is None or not records or (limit is not None and got >= limit):
                return

    @abstractmethod
    def _scroll_page(self, flt: StoreFilter | None, fields: list[str] | bool, limit: int, offset: Any
                     ) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
        """One page of (id, payload) pairs and the offset of the next page (None at the end)."""

    @abstractmethod
    def _count(self, flt: StoreFilter | None) -> int: ...

    @abstractmethod
    def _query(self, dense: list[float] | None, sparse: SparseVector | None, *, limit: int,
               flt: StoreFilter | None, mode: QueryMode, prefetch_limit: int, rrf_k: int,
               rrf_weights: list[float] | None, hnsw_ef: int, exact: bool) -> list[Hit]:
        """The engine's query, after the shared checks (filter not empty, vectors valid)."""

    @abstractmethod
    def optimize(self) -> None:
        """Build indexes (HNSW) after a batch of writes; blocks."""

    @abstractmethod
    def flush(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
