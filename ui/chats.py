"""The chats of one browser session: their messages, which one is open, and what the
API is sent as conversation for a follow-up question."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import streamlit as st

from rag.schema import Answer

CHATS, OPEN = "chats", "open_chat"
# Follow-ups send the recent turns only: the API accepts at most 50, and the
# question rewrite reads only the last few anyway.
CONVERSATION_TURNS = 12
TITLE_CHARS = 42


@dataclass
class Message:
    role: str  # "user" or "assistant"
    content: str
    answer: Answer | None = None  # assistant messages: the API's full answer
    error: str | None = None  # why there is no (complete) answer


@dataclass
class Chat:
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: float = field(default_factory=time.time)
    messages: list[Message] = field(default_factory=list)

    @property
    def title(self) -> str:
        first = next((m.content for m in self.messages if m.role == "user"), "New chat")
        first = " ".join(first.split())
        return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1].rstrip() + "…"

    def conversation(self) -> list[dict]:
        """Earlier turns for the API, oldest first; a question whose answer failed is left out with it."""
        turns = []
        for question, reply in zip(self.messages[::2], self.messages[1::2]):
            if reply.answer is not None:
                turns += [{"role": "user", "content": question.content},
                          {"role": "assistant", "content": reply.answer.answer or reply.answer.message or ""}]
        return turns[-CONVERSATION_TURNS:]


def all_chats() -> dict[str, Chat]:
    return st.session_state.setdefault(CHATS, {})


def current() -> Chat:
    """The open chat (a new, empty one the first time)."""
    chats = all_chats()
    chat = chats.get(st.session_state.get(OPEN, ""))
    if chat is None:
        chat = new_chat()
    return chat


def new_chat() -> Chat:
    """Open a fresh chat; an empty open chat is reused rather than piling up."""
    chats = all_chats()
    chat = chats.get(st.session_state.get(OPEN, ""))
    if chat is None or chat.messages:
        chat = Chat()
        chats[chat.id] = chat
    st.session_state[OPEN] = chat.id
    return chat


def open_chat(chat_id: str) -> None:
    if chat_id in all_chats():
        st.session_state[OPEN] = chat_id


def past_chats() -> list[Chat]:
    """Chats with at least one message, newest first."""
    return sorted((c for c in all_chats().values() if c.messages), key=lambda c: c.created, reverse=True)
