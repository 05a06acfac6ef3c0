"""The web UI: `rag ui` runs `streamlit run ui/app.py`.

It talks only to the REST API (RAG_API_URL), with the API key the user signs in with;
the embedded store belongs to the API process. Pages: Chat and Documents.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import session
from ui.answers import plain
from ui.status import render_status

HERE = Path(__file__).parent
APP_TITLE = "Ask your documents"

st.set_page_config(page_title=APP_TITLE, page_icon=":material/menu_book:", layout="centered")


def sign_in_page() -> None:
    st.title(APP_TITLE)
    st.markdown("Private question answering over your company's documents. Sign in with your API key.")
    with st.form("sign_in", clear_on_submit=True, border=True):
        key = st.text_input("API key", type="password", placeholder="rag_…",
                            help="An administrator creates keys with `rag keys create`.")
        submitted = st.form_submit_button("Sign in", type="primary", icon=":material/login:")
    if submitted:
        problem = session.sign_in(key)
        if problem:
            st.error(problem, icon=":material/key_off:")
        else:
            st.rerun()
    st.caption(f"API: {session.api_url()}")


def render_identity(user: dict) -> None:
    role = " · admin" if user.get("admin") else ""
    groups = plain(", ".join(user.get("groups") or []) or "no groups")
    st.markdown(f":material/account_circle: **{plain(user.get('name', ''))}**{role}  \n:gray[Groups: {groups}]")
    if st.button("Sign out", icon=":material/logout:", key="sign_out", type="tertiary"):
        session.sign_out()
        st.rerun()


# (script, title, icon); the first is the home page. A page's URL is its script's name.
PAGES = [("chat.py", "Chat", ":material/forum:"), ("documents.py", "Documents", ":material/folder_open:")]

user = session.user()
if user is None:
    # Every page's URL shows the sign-in form (a reload on /documents lands there, then back).
    st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:", default=index == 0,
                           url_path=None if index == 0 else Path(script).stem)
                   for index, (script, _, _) in enumerate(PAGES)], position="hidden").run()
else:
    page = st.navigation([st.Page(HERE / "views" / script, title=title, icon=icon, default=index == 0)
                          for index, (script, title, icon) in enumerate(PAGES)])
    with st.sidebar:
        render_identity(user)
        render_status(session.client())
    page.run()
