"""Result types shared by the CLI, the API and the UI: retrieved chunks, citations, answers.

Pydantic models, so the API returns them as they are and the CLI prints them with --json.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class RetrievedChunk(BaseModel):
    """One passage found by retrieval, with everything a citation needs."""

    id: str
    score: float = Field(
        description="Ranking score, higher first: cosine (dense), BM25 (sparse), or the fused score "
        "(hybrid: scaled 0..1 with relative fusion, reciprocal ranks with RRF). Compare within one result only."
    )
    doc_id: str
    source: str
    page: int | None = None
    heading: str | None = None
    text: str
    snippet: str = Field(description="A short excerpt of the passage for display.")
    groups: list[str] = []
    title: str | None = None
    relevance: float | None = Field(
        None, description="Cosine similarity of question and passage (dense embedding), when known."
    )


class Citation(BaseModel):
    """A source the answer cites as [n]."""

    n: int
    doc_id: str
    source: str
    page: int | None = None
    heading: str | None = None
    snippet: str
    score: float
    inferred: bool = Field(
        False, description="The model cited nothing; this source was picked by its word overlap with the answer."
    )


class Timings(BaseModel):
    """Seconds spent per stage (absent stages are 0)."""

    condense: float = 0.0
    embed: float = 0.0
    retrieve: float = 0.0
    rerank: float = 0.0
    first_token: float = 0.0
    generate: float = 0.0
    total: float = 0.0


class SearchResult(BaseModel):
    query: str
    chunks: list[RetrievedChunk]
    mode: str
    timings: Timings
    best_relevance: float | None = Field(
        None, description="Highest cosine similarity of the question to any passage the asker may see."
    )


class ConversationTurn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class Answer(BaseModel):
    question: str
    standalone_question: str | None = Field(None, description="The follow-up rewritten on its own, if it was.")
    answer: str
    citations: list[Citation]
    sources: list[RetrievedChunk] = Field(description="Every passage given to the model.")
    status: Literal["answered", "not_found", "llm_unavailable"]
    message: str | None = Field(None, description="Why the answer is 'not found' or the model is unavailable.")
    timings: Timings
