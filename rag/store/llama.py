"""llama-index adapter: our `VectorStore` (any engine) as a llama-index vector store, so
llama-index retrievers and query engines work over the same data the app uses.

Hybrid search needs the query text for the BM25 side; llama-index passes it as
``query.query_str``. Access control maps from metadata filters on ``groups`` / ``doc_id``.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterOperator,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from pydantic import PrivateAttr

from rag import sparse
from rag.store.base import StoreFilter, StorePoint, VectorStore, point_id

_MODES = {
    VectorStoreQueryMode.DEFAULT: "dense",
    VectorStoreQueryMode.HYBRID: "hybrid",
    VectorStoreQueryMode.SPARSE: "sparse",
    VectorStoreQueryMode.TEXT_SEARCH: "sparse",
}
_FILTERABLE = {"groups", "doc_id"}


def _to_store_filter(filters: MetadataFilters | None, doc_ids: list[str] | None) -> StoreFilter | None:
    groups: list[str] | None = None
    ids: list[str] | None = list(doc_ids) if doc_ids else None
    for f in (filters.filters if filters else []):
        if isinstance(f, MetadataFilters) or f.key not in _FILTERABLE:
            raise NotImplementedError(
                f"only filters on {sorted(_FILTERABLE)} are supported, not {getattr(f, 'key', f)!r}"
            )
        if f.operator not in (FilterOperator.EQ, FilterOperator.IN, FilterOperator.ANY, FilterOperator.CONTAINS):
            raise NotImplementedError(f"filter operator {f.operator} is not supported")
        values = [str(v) for v in (f.value if isinstance(f.value, list) else [f.value])]
        if f.key == "groups":
            groups = values
        else:
            ids = values if ids is None else [i for i in ids if i in values]
    if groups is None and ids is None:
        return None
    return StoreFilter(groups=groups, doc_ids=ids)


class LlamaVectorStore(BasePydanticVectorStore):
    """Wraps a `VectorStore`; nodes carry doc_id (ref_doc_id) and groups in metadata."""

    stores_text: bool = True
    is_embedding_query: bool = True
    default_groups: list[str] = ["everyone"]
    _store: VectorStore = PrivateAttr()

    def __init__(self, store: VectorStore, default_groups: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(default_groups=default_groups or ["everyone"], **kwargs)
        self._store = store

    @property
    def client(self) -> VectorStore:
        return self._store

    def add(self, nodes: list[BaseNode], **kwargs: Any) -> list[str]:
        by_doc: dict[str, int] = {}
        for node in nodes:
            doc = node.ref_doc_id or node.node_id
            by_doc[doc] = by_doc.get(doc, 0) + 1
        points, seen = [], {d: 0 for d in by_doc}
        for node in nodes:
            if node.embedding is None:
                raise ValueError(f"node {node.node_id} has no embedding; embed it before adding")
            doc = node.ref_doc_id or node.node_id
            text = node.get_content(metadata_mode=MetadataMode.NONE)
            meta = dict(node.metadata)
            content_hash = str(meta.pop("content_hash", node.hash))
            index = seen[doc]
            seen[doc] += 1
            payload = {
                **meta,
                "doc_id": doc,
                "source": str(meta.get("source") or meta.get("file_name") or doc),
                "groups": list(meta.get("groups") or self.default_groups),
                "content_hash": content_hash,
                "chunk_index": index,
                "chunk_count": by_doc[doc],
                "text": text,
            }
            points.append(StorePoint(point_id(doc, content_hash, index), node.embedding,
                                     sparse.encode_document(text), payload))
        self._store.upsert(points)
        return [p.id for p in points]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        self._store.delete_document(ref_doc_id)

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        mode = _MODES.get(query.mode)
        if mode is None:
            raise NotImplementedError(f"query mode {query.mode} is not supported")
        flt = _to_store_filter(query.filters, query.doc_ids)
        sparse_q = sparse.encode_query(query.query_str) if mode != "dense" and query.query_str else None
        if mode != "dense" and sparse_q is None:
            mode = "dense"  # no text to match: fall back to the dense side alone
        hits = self._store.query(query.query_embedding, sparse_q, limit=query.similarity_top_k, flt=flt, mode=mode)
        nodes = []
        for h in hits:
            meta = {k: v for k, v in h.payload.items() if k != "text"}
            nodes.append(TextNode(id_=h.id, text=h.payload.get("text", ""), metadata=meta,
                                  excluded_embed_metadata_keys=list(meta), excluded_llm_metadata_keys=list(meta)))
        return VectorStoreQueryResult(nodes=nodes, similarities=[h.score for h in hits], ids=[h.id for h in hits])
