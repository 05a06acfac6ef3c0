"""The application's composition root: one object that owns the store, the embedder and the
model client, and offers every use case. The CLI, the API and the evaluation all go through
it, so each feature is written once.

`groups=None` means "no access filter" (an admin or the local CLI operator); a list of
groups restricts every read to documents sharing at least one of them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property

from rag.settings import Settings
from rag.store.base import DocumentInfo, StoreFilter, VectorStore
from rag.store.factory import open_store


def access_filter(groups: Sequence[str] | None, doc_ids: Sequence[str] | None = None) -> StoreFilter | None:
    """The store filter for a principal's groups (None = unrestricted)."""
    if groups is None and doc_ids is None:
        return None
    return StoreFilter(groups=list(groups) if groups is not None else None,
                       doc_ids=list(doc_ids) if doc_ids is not None else None)


class RagService:
    def __init__(self, settings: Settings, *, create_store: bool = True) -> None:
        self.settings = settings
        self.store: VectorStore = open_store(settings, create=create_store)
        # Writers (ingestion, deletes) take this lock; reads go straight to the engine.
        self.write_lock = threading.RLock()

    # --- components, built on first use ------------------------------------------
    @cached_property
    def embedder(self):
        from rag.embedding import Embedder

        return Embedder(self.settings)

    @cached_property
    def llm(self):
        from rag.llm import LLMClient

        return LLMClient(self.settings)

    # --- ingestion --------------------------------------------------------------------
    def ingest(self, paths, *, groups=None, groups_file=None, prune=False, dry_run=False, progress=None):
        """Run the ingestion pipeline into this service's store; returns an IngestReport."""
        from ingest.pipeline import IngestPipeline

        pipeline = IngestPipeline(self.settings, self.store, self.embedder, self.write_lock)
        return pipeline.run(paths, groups=groups, groups_file=groups_file, prune=prune,
                            dry_run=dry_run, progress=progress)

    @cached_property
    def retriever(self):
        from rag.retrieval import Retriever

        return Retriever(self.settings, self.store, self.embedder)

    @cached_property
    def answerer(self):
        from rag.answer import Answerer

        return Answerer(self.settings, self.retriever, self.llm)

    # --- questions ------------------------------------------------------------------
    def search(self, question: str, groups: Sequence[str] | None = None, top_k: int | None = None,
               mode: str | None = None, doc_ids: Sequence[str] | None = None):
        """The best passages the principal may see (SearchResult); bad input raises QuestionError."""
        return self.retriever.search(question, access_filter(groups, doc_ids), top_k=top_k, mode=mode)

    def ask(self, question: str, groups: Sequence[str] | None = None, conversation=None,
            top_k: int | None = None, doc_ids: Sequence[str] | None = None):
        """A grounded Answer with citations (status answered / not_found / llm_unavailable)."""
        return self.answerer.ask(question, access_filter(groups, doc_ids), conversation, top_k)

    def ask_stream(self, question: str, groups: Sequence[str] | None = None, conversation=None,
                   top_k: int | None = None, doc_ids: Sequence[str] | None = None):
        """Token events, then one final event with the Answer; closing the iterator cancels generation."""
        return self.answerer.ask_stream(question, access_filter(groups, doc_ids), conversation, top_k)

    # --- documents ------------------------------------------------------------------
    def documents(self, groups: Sequence[str] | None = None) -> dict[str, DocumentInfo]:
        return self.store.documents(access_filter(groups))

    def document(self, doc_id: str, groups: Sequence[str] | None = None) -> DocumentInfo | None:
        """One document if it exists and the principal may see it (else None: no existence leak)."""
        return self.store.documents(access_filter(groups, [doc_id])).get(doc_id)

    def delete_document(self, doc_id: str) -> None:
        with self.write_lock:
            self.store.delete_document(doc_id)
            self.store.flush()

    def close(self) -> None:
        self.store.close()
