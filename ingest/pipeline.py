"""Ingestion: files -> parse -> chunks -> dense + sparse vectors -> store, incrementally.

How a run goes:
1. Discover files (failures such as broken links are recorded, never fatal).
2. Compare each file's content hash with what the store holds. Unchanged documents cost
   nothing; a document whose groups changed gets its payload updated, no re-embedding.
3. New and changed documents flow through three overlapping stages: a parser thread
   (parse + chunk), the embedder (the bottleneck, so it gets the main thread's attention),
   and a writer thread (upsert). Stages hand work over through small bounded queues.
4. A document's old version is deleted only after every chunk of its new version is
   stored, so a crash (even SIGKILL) never loses a document. Chunk ids derive from
   (doc_id, content hash, index), and the next run sees an interrupted document as
   incomplete (mixed hashes, or fewer chunks than recorded) and redoes it: the final
   store equals a clean run.
5. Each chunk records the recipe that made it (embedding model and chunk settings). After
   a change of model or chunk settings, the next run re-indexes unchanged files too: their
   old vectors live in another model's space, so they are deleted first, not kept beside.
6. `--prune` deletes documents under the given folders whose files are gone.
7. HNSW is built once at the end (not per batch).
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from ingest.discovery import discover
from ingest.groups import GroupRules
from rag import sparse
from rag.recipe import index_recipe
from rag.settings import Settings
from rag.store.base import DocumentInfo, StorePoint, VectorStore, point_id

Outcome = Literal["added", "updated", "unchanged", "regrouped", "failed", "pruned", "would_add",
                  "would_update", "would_regroup", "would_prune"]
EMBED_BATCH = 64
EMBED_CALL_CHUNKS = 4 * EMBED_BATCH  # chunks per embedder call, across documents
_DONE = object()
REINDEX_REASON = "re-indexed: the embedding model or the chunk settings changed"


class FileResult(BaseModel):
    path: str
    doc_id: str | None = None
    status: Outcome
    reason: str | None = None
    chunks: int = 0
    pages: int | None = None


class StageTimes(BaseModel):
    discover: float = 0.0
    hash: float = 0.0
    parse: float = 0.0
    chunk: float = 0.0
    embed: float = 0.0
    upsert: float = 0.0
    optimize: float = 0.0


class IngestReport(BaseModel):
    files: list[FileResult] = []
    chunks_written: int = 0
    embeddings_computed: int = 0
    tokens_embedded: int = 0
    pages_parsed: int = 0
    seconds: float = 0.0
    stages: StageTimes = StageTimes()
    dry_run: bool = False

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 = every file succeeded, 2 = some files failed (fatal errors raise instead)."""
        return 2 if self.failed else 0

    def summary(self) -> dict[str, int]:
        statuses = ("added", "updated", "unchanged", "regrouped", "pruned", "failed")
        return {s: self.count(s) for s in statuses} | {"chunks_written": self.chunks_written}


@dataclass
class _Work:
    """One document on its way through the stages."""

    path: Path
    doc_id: str
    source: str
    groups: list[str]
    content_hash: str
    previous: DocumentInfo | None
    reindex: bool = False  # same bytes, another recipe: its old chunks go before the new ones come
    chunks: list = field(default_factory=list)
    title: str | None = None
    pages: int | None = None
    vectors: list = field(default_factory=list)


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


Progress = Callable[[dict], None]


class IngestPipeline:
    def __init__(self, settings: Settings, store: VectorStore, embedder, write_lock=None) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.write_lock = write_lock or threading.RLock()
        self.recipe = index_recipe(settings)

    # --- planning --------------------------------------------------------------------
    def run(
        self,
        paths: Sequence[Path],
        *,
        groups: list[str] | None = None,
        groups_file: Path | None = None,
        prune: bool = False,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport(dry_run=dry_run)
        notify = progress or (lambda event: None)
        rules = GroupRules.load(groups_file or self.settings.groups_file, self.settings.default_groups)

        t = time.perf_counter()
        found = discover([Path(p) for p in paths], self.settings)
        report.stages.discover = time.perf_counter() - t
        for failure in found.errors:
            report.files.append(FileResult(path=str(failure.path), status="failed", reason=failure.reason))
        existing = self.store.documents()
        notify({"event": "start", "files": len(found.files)})

        todo: list[_Work] = []
        t = time.perf_counter()
        for cand in found.files:
            try:
                content_hash = file_hash(cand.path)
            except OSError as exc:
                report.files.append(FileResult(path=str(cand.path), doc_id=cand.doc_id, status="failed",
                                               reason=f"cannot read the file ({exc.strerror})"))
                continue
            doc_groups = sorted(set(groups)) if groups is not None else rules.groups_for(cand.relative)
            prev = existing.get(cand.doc_id)
            # Chunks from before recipes were recorded count as the current recipe.
            same_recipe = prev is not None and prev.recipes <= {self.recipe}
            if prev is not None and prev.complete and prev.content_hash == content_hash and same_recipe:
                if sorted(prev.groups) == doc_groups:
                    status: Outcome = "unchanged"
                else:
                    status = "would_regroup" if dry_run else "regrouped"
                    if not dry_run:
                        with self.write_lock:
                            self.store.set_payload(cand.doc_id, {"groups": doc_groups})
                report.files.append(FileResult(path=str(cand.path), doc_id=cand.doc_id, status=status,
                                               chunks=prev.chunks, pages=prev.pages or None))
                notify({"event": "file", "status": status, "chunks": 0})
                continue
            # Citations show the document id (folder/relative path), not this machine's absolute path.
            reindex = prev is not None and prev.content_hash == content_hash and not same_recipe
            todo.append(_Work(cand.path, cand.doc_id, cand.doc_id, doc_groups, content_hash, prev, reindex))
        report.stages.hash = time.perf_counter() - t

        if dry_run:
            for w in todo:
                status = "would_update" if w.previous else "would_add"
                report.files.append(FileResult(path=str(w.path), doc_id=w.doc_id, status=status))
        else:
            self._process(todo, report, notify)

        if prune:
            self._prune(found, existing, report, dry_run)

        wrote = any(f.status in ("added", "updated", "pruned") for f in report.files)
        if wrote:
            t = time.perf_counter()
            with self.write_lock:
                self.store.optimize()
                self.store.flush()
            report.stages.optimize = time.perf_counter() - t
        report.seconds = time.perf_counter() - started
        notify({"event": "end", "summary": report.summary()})
        return report

    def _prune(self, found, existing: dict[str, DocumentInfo], report: IngestReport, dry_run: bool) -> None:
        """Delete documents stored from under the given roots whose files are gone."""
        seen = {c.doc_id for c in found.files} | {f.doc_id for f in report.files if f.doc_id}
        roots = [str(r) for r in found.roots]
        for doc_id, info in existing.items():
            if doc_id in seen or not any(_under(info, root) for root in roots):
                continue
            if not dry_run:
                with self.write_lock:
                    self.store.delete_document(doc_id)
            report.files.append(FileResult(path=info.source, doc_id=doc_id,
                                           status="would_prune" if dry_run else "pruned"))

    # --- the three overlapping stages ---------------------------------------------------
    def _process(self, todo: list[_Work], report: IngestReport, notify: Progress) -> None:
        from ingest.chunking import chunk_document
        from ingest.parsers import ParseError, parse

        parsed_q: queue.Queue = queue.Queue(maxsize=4)
        write_q: queue.Queue = queue.Queue(maxsize=4)
        results_lock = threading.Lock()
        errors: list[BaseException] = []

        def record(result: FileResult) -> None:
            with results_lock:
                report.files.append(result)

        def parser() -> None:
            try:
                for w in todo:
                    t = time.perf_counter()
                    try:
                        doc = parse(w.path, self.settings)
                    except ParseError as exc:
                        record(FileResult(path=str(w.path), doc_id=w.doc_id, status="failed", reason=exc.reason))
                        notify({"event": "file", "status": "failed", "chunks": 0})
                        continue
                    except Exception as exc:  # a parser bug must fail one file, not the run
                        record(FileResult(path=str(w.path), doc_id=w.doc_id, status="failed",
                                          reason=f"unexpected parser error: {type(exc).__name__}: {exc}"))
                        notify({"event": "file", "status": "failed", "chunks": 0})
                        continue
                    t2 = time.perf_counter()
                    report.stages.parse += t2 - t
                    w.chunks = chunk_document(doc, self.settings)
                    w.title, w.pages = doc.title, doc.pages
                    report.stages.chunk += time.perf_counter() - t2
                    report.pages_parsed += doc.pages or 0
                    parsed_q.put(w)
            except BaseException as exc:  # surface in the main thread
                errors.append(exc)
            finally:
                parsed_q.put(_DONE)

        def writer() -> None:
            try:
                while (item := write_q.get()) is not _DONE:
                    w, start, vectors = item
                    t = time.perf_counter()
                    points = self._points(w, start, vectors)
                    with self.write_lock:
                        if start == 0 and w.reindex:
                            self.store.delete_document(w.doc_id)  # same ids, other model: no mixing
                        self.store.upsert(points)
                        if start + len(points) == len(w.chunks):
                            # Every chunk of the new version is stored: now drop older versions.
                            self.store.delete_document(w.doc_id, keep_hash=w.content_hash)
                    report.stages.upsert += time.perf_counter() - t
                    report.chunks_written += len(points)
                    if start + len(points) == len(w.chunks):
                        record(FileResult(path=str(w.path), doc_id=w.doc_id,
                                          status="updated" if w.previous else "added",
                                          chunks=len(w.chunks), pages=w.pages,
                                          reason=REINDEX_REASON if w.reindex else None))
                        notify({"event": "file", "status": "ok", "chunks": len(w.chunks)})
            except BaseException as exc:
                errors.append(exc)
                while write_q.get() is not _DONE:  # unblock the embedder
                    pass

        threads = [threading.Thread(target=parser, name="ingest-parse", daemon=True),
                   threading.Thread(target=writer, name="ingest-write", daemon=True)]
        for th in threads:
            th.start()
        # Segments (document, first chunk, end) waiting to be embedded together: small
        # documents share a call, so the embedder works on full, length-sorted batches.
        pending: list[tuple[_Work, int, int]] = []

        def embed_pending() -> None:
            chunks = [c for w, start, end in pending for c in w.chunks[start:end]]
            t = time.perf_counter()
            vectors = self.embedder.embed_documents([c.embedding_text for c in chunks])
            report.stages.embed += time.perf_counter() - t
            report.embeddings_computed += len(chunks)
            report.tokens_embedded += sum(c.embedding_tokens for c in chunks)
            offset = 0
            for w, start, end in pending:
                write_q.put((w, start, vectors[offset : offset + end - start]))
                offset += end - start
            pending.clear()
            notify({"event": "chunks", "count": len(chunks)})

        try:
            while (w := parsed_q.get()) is not _DONE:
                if errors:
                    break
                if not w.chunks:
                    record(FileResult(path=str(w.path), doc_id=w.doc_id, status="failed",
                                      reason="no text to index after chunking"))
                    continue
                for start in range(0, len(w.chunks), EMBED_BATCH):
                    pending.append((w, start, min(start + EMBED_BATCH, len(w.chunks))))
                    if sum(end - first for _, first, end in pending) >= EMBED_CALL_CHUNKS:
                        embed_pending()
                if pending and parsed_q.empty():  # don't sit idle while the parser works
                    embed_pending()
            if pending and not errors:
                embed_pending()
        finally:
            write_q.put(_DONE)
            for th in threads:
                th.join()
        if errors:
            raise errors[0]

    def _points(self, w: _Work, start: int, vectors) -> list[StorePoint]:
        points = []
        for offset, vector in enumerate(vectors):
            index = start + offset
            chunk = w.chunks[index]
            heading = " > ".join(chunk.heading_path) if chunk.heading_path else None
            payload = {
                "doc_id": w.doc_id,
                "source": w.source,
                "path": str(w.path),
                "title": w.title,
                "page": chunk.page,
                "heading": heading,
                "groups": w.groups,
                "content_hash": w.content_hash,
                "recipe": self.recipe,
                "chunk_index": index,
                "chunk_count": len(w.chunks),
                "start": chunk.start,
                "end": chunk.end,
                "text": chunk.text,
            }
            points.append(StorePoint(point_id(w.doc_id, w.content_hash, index), vector,
                                     sparse.encode_document(chunk.embedding_text), payload))
        return points


def _under(info: DocumentInfo, root: str) -> bool:
    path = info.path or info.source
    return str(path).startswith(root.rstrip("/") + "/") or str(path) == root
