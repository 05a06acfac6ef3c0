"""The sidebar's system status, from the API's /readyz: API, document store, language model."""

from __future__ import annotations

import time

import streamlit as st

from ui.client import ApiClient, ApiError

CACHE_KEY = "readiness"
# /readyz probes the model server; re-asking on every click would slow the page down.
REFRESH_SECONDS = 15.0

MODEL_DOWN = (
    "The language model server is not responding, so questions get the matching "
    "sources but no written answer."
)


def readiness(client: ApiClient, force: bool = False) -> dict:
    """{api, store, llm}: 'ok' or a sentence for each, refreshed every REFRESH_SECONDS."""
    cached = st.session_state.get(CACHE_KEY)
    if cached and not force and time.monotonic() - cached["at"] < REFRESH_SECONDS:
        return cached["state"]
    try:
        ready = client.readiness()
        state = {
            "api": "ok",
            "store": "ok" if ready.get("store") == "ok" else f"The document store is not usable ({ready.get('store')}).",
            "llm": "ok" if ready.get("llm") == "ok" else MODEL_DOWN,
        }
    except ApiError as exc:
        state = {"api": str(exc), "store": "unknown", "llm": "unknown"}
    st.session_state[CACHE_KEY] = {"at": time.monotonic(), "state": state}
    return state


def line(label: str, value: str) -> str:
    if value == "ok":
        return f":green[:material/check_circle:] {label}"
    if value == "unknown":
        return f":gray[:material/help:] {label}: unknown"
    return f":red[:material/error:] {label}"


def render_status(client: ApiClient) -> None:
    """Three status lines, plus a plain sentence for whatever is down."""
    state = readiness(client)
    with st.container(border=True):
        st.markdown("**System status**")
        st.markdown("  \n".join([line("API", state["api"]), line("Document store", state["store"]),
                                 line("Language model", state["llm"])]))
        for part in ("api", "store", "llm"):
            if state[part] not in ("ok", "unknown"):
                st.caption(state[part])
        if st.button("Refresh", icon=":material/refresh:", key="refresh_status", type="tertiary"):
            readiness(client, force=True)
            st.rerun()
