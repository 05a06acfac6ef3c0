"""Model-free BM25 sparse vectors, the same encoder for every store engine.

We use Qdrant Edge's built-in BM25 tokenizer (English stemming and stopwords, term
frequency with k/b length normalisation). Stores declare the sparse vector with the
IDF modifier, so inverse document frequency is computed by the engine over the
collection and stays right as documents come and go.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from rag.store.base import SparseVector

# Chunks are ~200 MiniLM word pieces, about 150 words: BM25's expected length.
AVG_CHUNK_WORDS = 150.0


@lru_cache(maxsize=1)
def _bm25():
    from qdrant_edge import Bm25, Bm25Config

    return Bm25(Bm25Config(avg_len=AVG_CHUNK_WORDS, language="english"))


def _convert(vec) -> SparseVector:
    return SparseVector(indices=list(vec.indices), values=list(vec.values))


def encode_document(text: str) -> SparseVector:
    return _convert(_bm25().embed_document(text))


def encode_documents(texts: Iterable[str]) -> list[SparseVector]:
    bm25 = _bm25()
    return [_convert(bm25.embed_document(t)) for t in texts]


def encode_query(text: str) -> SparseVector:
    return _convert(_bm25().embed_query(text))
