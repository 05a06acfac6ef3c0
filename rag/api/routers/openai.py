"""OpenAI-compatible chat: POST /v1/chat/completions (streamed or not) and GET /v1/models.

The last user message is the question and earlier user/assistant messages are the
conversation; system messages are ignored (the server's prompt decides how to answer
from sources). Stock OpenAI SDKs work unchanged with an API key of ours.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from rag.api.admission import answer_in_slot, close_answer_stream, open_answer_stream
from rag.api.auth import Caller
from rag.api.deps import service
from rag.api.errors import OpenAIErrorBody, error_response
from rag.api.openai_protocol import (
    RAG_MODEL_ID,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessageOut,
    Choice,
    ModelCard,
    ModelList,
    Usage,
    chunk,
    completion_id,
    footnotes,
    now,
)
from rag.api.streaming import END, EventStream, sse
from rag.schema import Answer, ConversationTurn
from rag.service import RagService

router = APIRouter(prefix="/v1", tags=["openai"])
Service = Annotated[RagService, Depends(service)]
FOOTNOTES_MARK = "\n\nSources:\n"
STARTED = now()


def split_messages(body: ChatCompletionRequest) -> tuple[str, list[ConversationTurn]]:
    """(question, conversation) from OpenAI messages."""
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or not turns[-1].text.strip():
        raise HTTPException(status_code=422, detail="The last user/assistant message must be a non-empty user message.")
    question = turns[-1].text
    # Our own footnotes in earlier answers are not conversation content.
    conversation = [ConversationTurn(role=m.role, content=m.text.split(FOOTNOTES_MARK)[0]) for m in turns[:-1]]
    return question, conversation


def usage(svc: RagService, question: str, conversation: list[ConversationTurn], content: str) -> Usage:
    """Token counts of what the client sent and received (the model's tokenizer when local)."""
    messages = [{"role": t.role, "content": t.content} for t in conversation] + [{"role": "user", "content": question}]
    prompt, completion = svc.llm.count_tokens(messages), svc.llm.tokens.count(content)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def reply_text(answer: Answer) -> str:
    """The answer, or for 'not found' the explanation (OpenAI clients only show the content)."""
    return answer.answer or answer.message or ""


def unavailable(request: Request, answer: Answer) -> JSONResponse:
    return error_response(request.url.path, 503, f"The language model is unavailable: {answer.message}")


@router.get("/models", response_model=ModelList, summary="The one model this server offers: the RAG pipeline.")
def models(caller: Caller) -> ModelList:
    return ModelList(data=[ModelCard(id=RAG_MODEL_ID, created=STARTED)])


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    summary="OpenAI-compatible chat over the caller's documents.",
    responses={200: {"content": {"text/event-stream": {}}},
               503: {"model": OpenAIErrorBody, "description": "The model server is unavailable."}},
)
async def chat_completions(body: ChatCompletionRequest, request: Request, caller: Caller, svc: Service):
    question, conversation = split_messages(body)
    metrics = request.app.state.metrics
    cid, created = completion_id(), now()

    slots = request.app.state.answer_slots
    if not body.stream:
        answer = await answer_in_slot(slots, lambda: svc.ask(question, caller.read_groups, conversation=conversation))
        metrics.answer(answer)
        if answer.status == "llm_unavailable":
            return unavailable(request, answer)
        content = reply_text(answer) + footnotes(answer.citations)
        return ChatCompletion(
            id=cid, created=created, choices=[Choice(message=ChatMessageOut(content=content))],
            usage=await run_in_threadpool(usage, svc, question, conversation, content),
            citations=answer.citations,
        )

    events, first = await open_answer_stream(
        slots, lambda: svc.ask_stream(question, caller.read_groups, conversation=conversation))
    if first is not END and first["type"] == "final" and first["answer"].status == "llm_unavailable":
        close_answer_stream(slots, events)
        metrics.answer(first["answer"])
        return unavailable(request, first["answer"])

    streamed: list[str] = []
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def render(event: dict) -> list[str]:
        out = [] if streamed else [sse(chunk(cid, created, {"role": "assistant", "content": ""}))]
        if event["type"] == "token":
            streamed.append(event["text"])
            return out + [sse(chunk(cid, created, {"content": event["text"]}))]
        answer: Answer = event["answer"]
        metrics.answer(answer)
        if answer.status == "llm_unavailable":  # the model failed mid-answer
            return out + render_error(answer.message or "the language model stopped")
        # A refusal ("not found") may come without tokens: send its text.
        tail = ("" if streamed else reply_text(answer)) + footnotes(answer.citations)
        streamed.append(tail)
        out.append(sse(chunk(cid, created, {"content": tail})))
        cites = [c.model_dump(mode="json") for c in answer.citations]
        out.append(sse(chunk(cid, created, {}, "stop", citations=cites)))
        if include_usage:
            counted = usage(svc, question, conversation, "".join(streamed)).model_dump()
            out.append(sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                            "model": RAG_MODEL_ID, "choices": [], "usage": counted}))
        return out + [sse("[DONE]")]

    def render_error(message: str) -> list[str]:
        return [sse({"error": {"message": message, "type": "service_unavailable", "param": None, "code": 503}})]

    return EventStream(events, render, render_error, first=first, on_close=slots.release,
                       on_cancel=lambda: metrics.cancelled.labels("/v1/chat/completions").inc())
