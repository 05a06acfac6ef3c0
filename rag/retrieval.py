"""Retrieval: a question and the asker's groups in, the best passages out.

* Hybrid by default: the dense (MiniLM) and sparse (BM25) rankings are fused by their
  scaled scores (``hybrid_fusion="relative"``, `rag.store.fusion`) or with weighted
  reciprocal rank fusion inside the engine (``"rrf"``). ``dense`` and ``sparse`` alone
  are there for comparison and for the evaluation.
* The access filter (the asker's groups, optionally some documents) is part of the
  store query itself, so passages the asker may not see are never even candidates.
* Results are *sources*: one per page (slide, sheet or heading section), ranked by its best
  passage, which is its text; ``passages_per_source`` > 1 merges that many of the page's best
  passages in reading order. A citation names a page, and the small model's few context
  slots then hold distinct pages rather than overlapping pieces of one.
* An optional cross-encoder re-orders the first ``rerank_top_n`` sources.
* Every result also carries the question's *relevance*: the cosine similarity of the
  closest passage the asker may see. Fused scores are ranks or scaled scores, not relevance, so the
  answer layer's "not found" gate (``score_threshold``) uses this in every mode.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from functools import cached_property

from rag.schema import RetrievedChunk, SearchResult, Timings
from rag.settings import Settings
from rag.sparse import encode_query
from rag.store.base import Hit, StoreFilter, VectorStore

log = logging.getLogger(__name__)

MODES = ("hybrid", "dense", "sparse")
SNIPPET_CHARS = 240


class QuestionError(ValueError):
    """A question (or search option) that cannot be served, explained in one sentence."""


def validate_question(question: str | None, max_chars: int) -> str:
    """The question, trimmed; a clear error when it is empty or too long.

    Too long is refused rather than truncated: a cut question silently means
    something else, and the caller can shorten it knowingly.
    """
    text = (question or "").replace("\x00", "").strip()
    if not text:
        raise QuestionError("The question is empty; type a question.")
    if len(text) > max_chars:
        raise QuestionError(
            f"The question is {len(text):,} characters long; the limit is {max_chars:,} "
            "(RAG_MAX_QUESTION_CHARS). Shorten it."
        )
    return text


def validate_top_k(top_k: int | None, default: int) -> int:
    top_k = default if top_k is None else top_k
    if not 1 <= top_k <= 100:
        raise QuestionError(f"top_k must be between 1 and 100, not {top_k}.")
    return top_k


def heading_text(heading) -> str | None:
    """Headings are stored as one 'A > B' string; accept a list too."""
    if not heading:
        return None
    if isinstance(heading, (list, tuple)):
        return " > ".join(str(h) for h in heading if h) or None
    return str(heading)


_WORD = re.compile(r"\w+", re.UNICODE)


def make_snippet(text: str, question: str, width: int = SNIPPET_CHARS) -> str:
    """A short excerpt of ``text`` around the first place it shares a word with the question."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    words = {w.lower() for w in _WORD.findall(question) if len(w) > 3}
    start = 0
    for match in _WORD.finditer(text):
        if match.group().lower() in words:
            start = max(0, match.start() - width // 4)
            break
    start = min(start, len(text) - width)
    if start > 0:  # begin on a word boundary
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    excerpt = text[start : start + width]
    end_space = excerpt.rfind(" ")
    if start + width < len(text) and end_space > width * 0.8:
        excerpt = excerpt[:end_space]
    return ("…" if start > 0 else "") + excerpt + ("…" if start + len(excerpt) < len(text) else "")


def _unit_key(payload: dict) -> tuple:
    """The unit a passage was cut from: a document's page, slide, sheet or heading section."""
    return payload.get("doc_id"), payload.get("page"), payload.get("heading")


def group_by_unit(hits: Sequence[Hit], per_unit: int) -> list[list[Hit]]:
    """Hits grouped by their unit, best unit first; each group keeps its ``per_unit`` best hits."""
    groups: dict[tuple, list[Hit]] = {}
    for hit in hits:  # best first
        group = groups.setdefault(_unit_key(hit.payload), [])
        if len(group) < per_unit:
            group.append(hit)
    return list(groups.values())


GAP = "\n…\n"  # between passages of one page that are not adjacent


def merged_text(hits: Sequence[Hit]) -> str:
    """The passages of one unit in reading order, their overlaps written once.

    Chunk offsets point into the unit's text, so overlapping chunks are joined exactly; the
    overlap is compared too, in case two units share a key (same page and heading).
    """
    text, end = "", None
    for hit in sorted(hits, key=lambda h: h.payload.get("start") or 0):
        part, start = hit.payload.get("text") or "", hit.payload.get("start")
        overlap = end - start if end is not None and start is not None else -1
        written = text[len(text) - overlap:][: len(part)] if 0 <= overlap <= len(text) else None
        if written is not None and part.startswith(written):  # overlaps, touches or lies inside
            text += part[len(written):]
        else:
            text += (GAP if text else "") + part
        part_end = hit.payload.get("end")
        end = max(end or 0, part_end) if part_end is not None and start is not None else None
    return text


def to_chunk(hit: Hit, question: str, relevance: float | None = None, text: str | None = None) -> RetrievedChunk:
    """A result from its best hit; ``text`` is the merged text of its unit when there are several."""
    p = hit.payload
    text = (p.get("text") or "") if text is None else text
    page = p.get("page")
    return RetrievedChunk(
        id=hit.id,
        score=hit.score,
        doc_id=str(p.get("doc_id", "")),
        source=str(p.get("source", "")),
        page=int(page) if page is not None else None,
        heading=heading_text(p.get("heading")),
        text=text,
        snippet=make_snippet(text, question),
        groups=list(p.get("groups") or []),
        title=p.get("title"),
        relevance=relevance,
    )


class Reranker:
    """A sentence-transformers cross-encoder loaded from a local folder (no download)."""

    def __init__(self, model_path: str):
        from pathlib import Path

        if not Path(model_path).is_dir():
            raise QuestionError(f"The reranker model folder {model_path} does not exist (RAG_RERANKER_MODEL).")
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(model_path, device="cpu", local_files_only=True)

    def scores(self, question: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        return [float(s) for s in self.model.predict([(question, t) for t in texts], show_progress_bar=False)]

    def rerank(self, question: str, chunks: list[RetrievedChunk], top_k: int) -> list[RetrievedChunk]:
        """The chunks re-ordered by the cross-encoder's score (which becomes their score)."""
        scores = self.scores(question, [c.text for c in chunks])
        ranked = sorted(zip(scores, range(len(chunks))), key=lambda pair: (-pair[0], pair[1]))
        return [chunks[i].model_copy(update={"score": s}) for s, i in ranked[:top_k]]


class Retriever:
    def __init__(self, settings: Settings, store: VectorStore, embedder):
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self._models_warned: set[str] = set()

    @cached_property
    def reranker(self) -> Reranker | None:
        path = self.settings.reranker_model
        return Reranker(path) if path else None

    def search(
        self,
        question: str,
        flt: StoreFilter | None = None,
        *,
        top_k: int | None = None,
        mode: str | None = None,
    ) -> SearchResult:
        """The ``top_k`` best passages the filter lets through, best first.

        ``flt`` is the access filter (None = unrestricted); it is evaluated by the store.
        """
        s = self.settings
        started = time.perf_counter()
        question = validate_question(question, s.max_question_chars)
        mode = mode or s.retrieval_mode
        if mode not in MODES:
            raise QuestionError(f"Unknown retrieval mode '{mode}'; use one of {', '.join(MODES)}.")
        top_k = validate_top_k(top_k, s.top_k)
        timings = Timings()
        if flt is not None and flt.matches_nothing:  # e.g. a key with no groups: nothing to look at
            return SearchResult(query=question, chunks=[], mode=mode, timings=timings)

        # The dense vector is needed for relevance in every mode, including sparse.
        dense = self.embedder.embed_query(question)
        sparse = encode_query(question) if mode != "dense" else None
        timings.embed = time.perf_counter() - started

        t = time.perf_counter()
        reranker = self.reranker
        # Enough passages for top_k distinct units (several may come from one page).
        candidates = max(top_k, s.rerank_top_n if reranker else 0, min(s.prefetch_k, top_k * 4))
        hits = self.store.query(
            dense,
            sparse,
            limit=candidates,
            flt=flt,
            mode=mode,
            prefetch_limit=max(s.prefetch_k, candidates),
            fusion=s.hybrid_fusion,
            rrf_k=s.rrf_k,
            weights=[s.hybrid_dense_weight, s.hybrid_sparse_weight],
        )
        self._warn_about_other_models(hits)
        relevance = self._relevance(dense, hits, flt, mode)
        # Equal fused scores happen (dense and BM25 ranking two passages in opposite
        # orders tie exactly under RRF); the engine breaks them arbitrarily. Break them by
        # relevance, then id, so the same question always gets the same sources.
        hits.sort(key=lambda h: (-h.score, -relevance.get(h.id, -1.0), h.id))
        timings.retrieve = time.perf_counter() - t

        chunks = [
            to_chunk(group[0], question, max((relevance[h.id] for h in group if h.id in relevance), default=None),
                     merged_text(group) if len(group) > 1 else None)
            for group in group_by_unit(hits, s.passages_per_source)[:candidates]
        ]
        if reranker and chunks:
            t = time.perf_counter()
            chunks = reranker.rerank(question, chunks, top_k)
            timings.rerank = time.perf_counter() - t
        chunks = chunks[:top_k]
        timings.total = time.perf_counter() - started
        return SearchResult(
            query=question,
            chunks=chunks,
            mode=mode,
            timings=timings,
            best_relevance=max(relevance.values()) if relevance else None,
        )

    def _warn_about_other_models(self, hits: list[Hit]) -> None:
        """Vectors made by another embedding model don't compare with this one's: say so, once per model."""
        from rag.embedding import model_fingerprint
        from rag.recipe import recipe_model

        current = model_fingerprint(self.embedder.model_path)
        found = {recipe_model(h.payload["recipe"]) for h in hits if h.payload.get("recipe")}
        new = found - {current} - self._models_warned
        if new:
            self._models_warned |= new
            log.warning("Some passages were embedded with %s, but the embedding model is now %s: their similarity "
                        "scores mean nothing. Run `rag ingest` on the document folders again to re-index them.",
                        ", ".join(sorted(new)), current)

    def _relevance(self, dense, hits: list[Hit], flt: StoreFilter | None, mode: str) -> dict[str, float]:
        """Cosine similarity per point id for the closest visible passages.

        Dense hits already carry it; otherwise one more (filtered, HNSW) dense query
        finds it, which costs about a millisecond.
        """
        if mode == "dense":
            return {h.id: h.score for h in hits}
        nearest = self.store.query(
            dense, None, limit=max(self.settings.prefetch_k, len(hits)), flt=flt, mode="dense"
        )
        return {h.id: h.score for h in nearest}
