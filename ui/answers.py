"""How an answer looks: the text, numbered citations under it, the status, the timings.

The [n] markers in the answer text are the numbers of the citations shown under it
(the API numbers them that way); each citation opens to show the file name, page,
heading and cited passage, with a download of the original through the API.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from pathlib import PurePosixPath

import streamlit as st

from rag.schema import Answer, Timings
from ui.chats import Message
from ui.client import ApiClient, ApiError, sentence

NOT_FOUND = "Not found in your documents: none of the passages you can access answers this question."
STOPPED = "The answer stopped before it was complete: {reason}"
TIMING_LABELS = {
    "condense": "Follow-up rewrite",
    "embed": "Embedding",
    "retrieve": "Retrieval",
    "rerank": "Reranking",
    "first_token": "First token",
    "generate": "Writing",
}
# Characters Streamlit's Markdown would interpret in document text (`$` starts LaTeX).
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#+\-!|$~])")


def plain(text: str) -> str:
    """Document text shown as written, not as Markdown."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def answer_markdown(text: str) -> str:
    """The model's answer as Markdown, except `$` (amounts are not formulas)."""
    return text.replace("$", r"\$")


def file_name(source: str) -> str:
    return PurePosixPath(source.replace("\\", "/")).name or source


def source_label(n: int, source: str, page: int | None, heading: str | None) -> str:
    parts = [f"[{n}] {file_name(source)}"]
    if page:
        parts.append(f"page {page}")
    if heading:
        parts.append(heading if len(heading) <= 60 else heading[:59] + "…")
    return " · ".join(parts)


def render_source(client: ApiClient, key: str, n: int, *, doc_id: str, source: str, page: int | None,
                  heading: str | None, passage: str, note: str | None = None) -> None:
    """One numbered, expandable source with its passage and a download of the original."""
    with st.expander(plain(source_label(n, source, page, heading))):
        details = [f"**File:** {plain(file_name(source))}"]
        if page:
            details.append(f"**Page:** {page}")
        if heading:
            details.append(f"**Section:** {plain(heading)}")
        st.markdown("  \n".join(details))
        st.markdown("\n".join("> " + plain(line) if line.strip() else ">" for line in passage.splitlines()))
        if note:
            st.caption(note)
        name = file_name(source)
        st.download_button(
            f"Download {name}",
            data=lambda: client.download(doc_id),  # fetched only when clicked, with the user's key
            file_name=name,
            mime=mimetypes.guess_type(name)[0] or "application/octet-stream",
            key=f"download-{key}-{n}",
            on_click="ignore",
            icon=":material/download:",
            type="tertiary",
        )


def render_citations(client: ApiClient, answer: Answer, key: str) -> None:
    if not answer.citations:
        return
    st.caption("Sources")
    for c in answer.citations:
        note = "The answer has no marker for this source; it was matched by its wording." if c.inferred else None
        render_source(client, key, c.n, doc_id=c.doc_id, source=c.source, page=c.page, heading=c.heading,
                      passage=cited_passage(answer, c.n, c.doc_id) or c.snippet, note=note)


def cited_passage(answer: Answer, n: int, doc_id: str) -> str | None:
    """The whole passage behind citation [n] (the sources are numbered 1..k as the model saw them)."""
    if 1 <= n <= len(answer.sources) and answer.sources[n - 1].doc_id == doc_id:
        return answer.sources[n - 1].text
    return None


def render_retrieved(client: ApiClient, answer: Answer, key: str) -> None:
    """The passages found for the question (shown when no answer could be written)."""
    if not answer.sources:
        return
    st.caption("Matching sources")
    for n, s in enumerate(answer.sources, start=1):
        render_source(client, key, n, doc_id=s.doc_id, source=s.source, page=s.page, heading=s.heading,
                      passage=s.text or s.snippet)


def render_timings(timings: Timings) -> None:
    with st.expander(f"Answered in {timings.total:.2f} s", icon=":material/timer:"):
        stages = [f"{label}: {getattr(timings, name):.2f} s"
                  for name, label in TIMING_LABELS.items() if getattr(timings, name) > 0]
        st.caption(" · ".join(stages) or "No stage took measurable time.")


def render_answer(client: ApiClient, message: Message, key: str) -> None:
    """An assistant message: text, status, citations or retrieved sources, timings."""
    answer = message.answer
    if answer is None:
        if message.content:
            st.markdown(answer_markdown(message.content))
        st.error(message.error or "No answer arrived.", icon=":material/error:")
        return
    if answer.status == "not_found":
        st.info(NOT_FOUND, icon=":material/search_off:")
        if answer.message:  # why: nothing visible, nothing relevant, or a name no passage mentions
            st.caption(sentence(answer.message))
    elif answer.status == "llm_unavailable":
        if answer.answer:
            st.markdown(answer_markdown(answer.answer))
        cause = f" {sentence(answer.message)}" if answer.message else ""
        st.warning(f"The language model is unavailable, so there is no written answer.{cause}",
                   icon=":material/cloud_off:")
        render_retrieved(client, answer, key)
    else:
        st.markdown(answer_markdown(answer.answer))
        if message.error:
            st.warning(message.error, icon=":material/warning:")
        render_citations(client, answer, key)
    render_timings(answer.timings)


def render_message(client: ApiClient, message: Message, key: str) -> None:
    with st.chat_message(message.role, avatar=":material/person:" if message.role == "user" else ":material/robot_2:"):
        if message.role == "user":
            st.markdown(plain(message.content))
        else:
            render_answer(client, message, key)


def stream_answer(client: ApiClient, question: str, conversation: list[dict], key: str) -> Message:
    """Ask, show the tokens as they arrive, then the final answer with its citations."""
    final: dict = {}
    pieces: list[str] = []

    with st.chat_message("assistant", avatar=":material/robot_2:"):
        waiting = st.empty()
        waiting.caption("Searching your documents…")

        def tokens() -> Iterator[str]:
            try:
                for event in client.ask_stream(question, conversation):
                    waiting.empty()
                    if event["type"] == "token":
                        pieces.append(event["text"])
                        yield answer_markdown(event["text"])
                    else:
                        final["answer"] = event["answer"]
            except ApiError as exc:
                final["error"] = str(exc)
            waiting.empty()

        slot = st.empty()
        slot.write_stream(tokens())
        text = "".join(pieces)
        answer = final.get("answer")
        if answer is None:
            message = Message("assistant", text, error=final.get("error") or "No answer arrived.")
        else:
            # The final text is authoritative (the API drops invalid citation markers).
            error = STOPPED.format(reason=final["error"]) if "error" in final else None
            message = Message("assistant", answer.answer, answer=answer, error=error)
        slot.empty()
        render_answer(client, message, key)
    return message
