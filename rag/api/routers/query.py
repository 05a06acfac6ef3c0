"""Questions and retrieval: POST /v1/query (answer with citations, optionally streamed) and
POST /v1/search (retrieval only). Both are filtered by the caller's groups."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rag.api.admission import answer_in_slot, close_answer_stream, open_answer_stream
from rag.api.auth import Caller
from rag.api.deps import service
from rag.api.streaming import END, EventStream, sse
from rag.schema import Answer, ConversationTurn, SearchResult
from rag.service import RagService

router = APIRouter(prefix="/v1", tags=["query"])
Service = Annotated[RagService, Depends(service)]


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, description="The question, in any language the model handles.")
    top_k: int | None = Field(None, ge=1, le=100, description="Passages to retrieve (default: RAG_TOP_K).")
    conversation: list[ConversationTurn] = Field(
        default_factory=list, max_length=50,
        description="Earlier turns, oldest first; a follow-up is rewritten into a standalone question.")
    stream: bool = Field(False, description="Answer as Server-Sent Events: `token` events, then `final`.")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, description="What to look for.")
    top_k: int | None = Field(None, ge=1, le=100, description="Passages to return (default: RAG_TOP_K).")
    mode: Literal["hybrid", "dense", "sparse"] | None = Field(None, description="Default: RAG_RETRIEVAL_MODE.")


def answer_response(request: Request, answer: Answer) -> JSONResponse:
    """200 with the answer; 503 with the retrieved sources when the model is unavailable."""
    request.app.state.metrics.answer(answer)
    status = 503 if answer.status == "llm_unavailable" else 200
    return JSONResponse(answer.model_dump(mode="json"), status_code=status)


@router.post("/search", response_model=SearchResult, summary="Retrieve passages (no answer).")
def search(body: SearchRequest, caller: Caller, svc: Service) -> SearchResult:
    return svc.search(body.query, caller.read_groups, top_k=body.top_k, mode=body.mode)


@router.post(
    "/query",
    response_model=Answer,
    summary="Answer a question from the caller's documents, with citations.",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The answer (JSON, or SSE with stream=true)."},
        503: {"model": Answer, "description": "The model server is unavailable: retrieved sources and the cause."},
    },
)
async def query(body: QueryRequest, request: Request, caller: Caller, svc: Service):
    slots = request.app.state.answer_slots
    if not body.stream:
        answer = await answer_in_slot(slots, lambda: svc.ask(
            body.question, caller.read_groups, conversation=body.conversation, top_k=body.top_k))
        return answer_response(request, answer)

    events, first = await open_answer_stream(slots, lambda: svc.ask_stream(
        body.question, caller.read_groups, conversation=body.conversation, top_k=body.top_k))
    if first is not END and first["type"] == "final" and first["answer"].status == "llm_unavailable":
        close_answer_stream(slots, events)
        return answer_response(request, first["answer"])  # nothing streamed yet: a plain 503

    metrics = request.app.state.metrics

    def render(event: dict) -> list[str]:
        if event["type"] == "token":
            return [sse({"text": event["text"]}, event="token")]
        metrics.answer(event["answer"])
        return [sse(event["answer"].model_dump(mode="json"), event="final")]

    def render_error(message: str) -> list[str]:
        return [sse({"detail": message}, event="error")]

    return EventStream(events, render, render_error, first=first, on_close=slots.release,
                       on_cancel=lambda: metrics.cancelled.labels("/v1/query").inc())
