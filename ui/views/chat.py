"""The chat page: ask questions, watch answers stream in, open their sources."""

from __future__ import annotations

import streamlit as st

from ui import chats, session
from ui.answers import render_message, stream_answer
from ui.chats import Message

client = session.client()
chat = chats.current()

# Read the question first (the input is pinned to the bottom wherever it is called), so
# the chat list and the messages are drawn once, already with it: no rerun, no flicker.
question = st.chat_input("Ask a question about your documents", key="question")
asked = bool(question and question.strip())
if asked:
    conversation = chat.conversation()
    chat.messages.append(Message("user", question))

with st.sidebar:
    st.divider()
    if st.button("New chat", icon=":material/add_comment:", width="stretch", key="new_chat"):
        chats.new_chat()
        st.rerun()
    past = chats.past_chats()
    if past:
        st.caption("Chats in this session")
        for item in past:
            if st.button(item.title, key=f"open-{item.id}", width="stretch",
                         type="secondary" if item.id == chat.id else "tertiary"):
                chats.open_chat(item.id)
                st.rerun()

if not chat.messages:
    st.title("Ask your documents")
    st.markdown(
        "Answers come only from the documents your key can see. Each answer cites its "
        "sources as [1], [2], … — open a source below the answer to read the passage "
        "or download the original file."
    )

for index, message in enumerate(chat.messages):
    render_message(client, message, key=f"{chat.id}-{index}")

if asked:
    chat.messages.append(stream_answer(client, question, conversation, key=f"{chat.id}-{len(chat.messages)}"))
