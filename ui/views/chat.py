"""The chat page: ask questions, watch answers stream in, open their sources."""

from __future__ import annotations

import streamlit as st

from ui import chats, session
from ui.answers import render_message, stream_answer
from ui.chats import Message

client = session.client()
chat = chats.current()

with st.sidebar:
    if st.button("New chat", icon=":material/add_comment:", use_container_width=True, key="new_chat"):
        chats.new_chat()
        st.rerun()
    past = chats.past_chats()
    if past:
        st.caption("Chats in this session")
        for item in past:
            if st.button(item.title, key=f"open-{item.id}", use_container_width=True,
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

question = st.chat_input("Ask a question about your documents", key="question")
if question and question.strip():
    conversation = chat.conversation()
    chat.messages.append(Message("user", question))
    render_message(client, chat.messages[-1], key=f"{chat.id}-{len(chat.messages) - 1}")
    answer = stream_answer(client, question, conversation, key=f"{chat.id}-{len(chat.messages)}")
    chat.messages.append(answer)
    st.rerun()  # the sidebar's chat list shows the new title
