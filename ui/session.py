"""The signed-in user of one browser session: their API client and identity.

Both live only in ``st.session_state`` (one per browser tab, in server memory), so the
API key is never written to a URL, a cookie, a file or a log.
"""

from __future__ import annotations

import streamlit as st

from rag.settings import get_settings
from ui.client import ApiClient, ApiError

CLIENT, USER = "api_client", "user"


def api_url() -> str:
    """Where the API is: RAG_API_URL (set by `rag ui`), else the configured host and port."""
    return get_settings().effective_api_url


def sign_in(key: str) -> str | None:
    """Check the key with the API; keep it in the session. Returns an error sentence, or None."""
    key = key.strip()
    if not key:
        return "Enter your API key."
    settings = get_settings()
    client = ApiClient(api_url(), key, answer_timeout=settings.api_request_timeout + 30)
    try:
        user = client.me()
    except ApiError as exc:
        client.close()
        return "This API key is not valid or has been revoked." if exc.status == 401 else str(exc)
    st.session_state[CLIENT], st.session_state[USER] = client, user
    return None


def sign_out() -> None:
    """Forget everything this session held: the key, the user, their chats and jobs."""
    client = st.session_state.get(CLIENT)
    if client is not None:
        client.close()
    for name in list(st.session_state.keys()):
        del st.session_state[name]


def client() -> ApiClient:
    return st.session_state[CLIENT]


def user() -> dict | None:
    return st.session_state.get(USER)
