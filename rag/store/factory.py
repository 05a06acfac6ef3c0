"""The one place that decides which store engine to open, from settings alone."""

from __future__ import annotations

from rag.settings import Settings
from rag.store.base import VectorStore


def open_store(settings: Settings, *, create: bool = True) -> VectorStore:
    """Open the configured store. ``create=False`` refuses to make a new, empty one."""
    from rag.embedding import vector_size

    backend = settings.effective_store_backend
    dim = vector_size(settings)
    common = dict(
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construct=settings.hnsw_ef_construct,
        hnsw_ef=settings.hnsw_ef,
        create=create,
    )
    if backend == "edge":
        from rag.store.edge import EdgeStore

        return EdgeStore(settings.store_dir / "edge", dim, **common)

    from rag.store.qdrant import QdrantClientStore

    if backend == "local":
        return QdrantClientStore(
            settings.collection, dim, path=settings.store_dir / "local", **common
        )
    if not settings.qdrant_url:
        raise ValueError("RAG_STORE_BACKEND=server needs RAG_QDRANT_URL")
    return QdrantClientStore(
        settings.collection,
        dim,
        url=settings.qdrant_url,
        api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
        prefer_grpc=settings.qdrant_prefer_grpc,
        timeout=settings.qdrant_timeout,
        shard_number=settings.qdrant_shard_number,
        replication_factor=settings.qdrant_replication_factor,
        write_consistency_factor=settings.qdrant_write_consistency_factor,
        **common,
    )
