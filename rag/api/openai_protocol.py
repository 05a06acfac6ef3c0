"""The subset of OpenAI's chat-completions protocol we serve, in OpenAI's exact shapes.

Requests accept (and ignore) sampling fields clients commonly send; the answer always
comes from the RAG pipeline with the server's own settings. Responses add one field,
``citations``, which OpenAI clients ignore; the same sources also appear as footnotes in
the message text.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.schema import Citation

RAG_MODEL_ID = "rag"


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ... are accepted and ignored

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, top_p, user, ...: accepted, not used

    model: str = Field(RAG_MODEL_ID, description="Any value is accepted; the answer comes from the RAG pipeline.")
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=100)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice is produced.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str = RAG_MODEL_ID
    choices: list[Choice]
    usage: Usage
    citations: list[Citation] = Field(description="The sources the answer cites (not part of OpenAI's protocol).")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "onprem-rag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def now() -> int:
    return int(time.time())


def chunk(cid: str, created: int, delta: dict[str, Any], finish_reason: str | None = None,
          **extra: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk`` (a streamed piece of the answer)."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": RAG_MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            **extra}


def footnotes(citations: list[Citation]) -> str:
    """Sources as text, for clients that ignore the ``citations`` field."""
    if not citations:
        return ""
    lines = []
    for c in citations:
        name = c.source.rsplit("/", 1)[-1] or c.doc_id
        lines.append(f"[{c.n}] {name}" + (f", p. {c.page}" if c.page else ""))
    return "\n\nSources:\n" + "\n".join(lines)
