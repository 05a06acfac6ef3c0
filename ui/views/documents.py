"""The documents page: upload files (a background job with progress), list, search, delete."""

from __future__ import annotations

import streamlit as st

from ui import jobs, session
from ui.answers import file_name
from ui.client import ApiClient, ApiError

PAGE_SIZE = 100
CONFIRM = "confirm_delete"


def upload_form(client: ApiClient, user: dict, known_groups: list[str]) -> None:
    with st.container(border=True):
        st.subheader("Add documents", anchor=False)
        with st.form("upload", clear_on_submit=True, border=False):
            files = st.file_uploader("Files", accept_multiple_files=True,
                                     help="PDF, Word, PowerPoint, Excel, HTML, text and more; several at once.")
            own_groups = list(user.get("groups") or [])
            if user.get("admin"):
                groups = st.multiselect(
                    "Groups that may read them", options=sorted(set(own_groups) | set(known_groups)), default=[],
                    accept_new_options=True, placeholder="Choose or type group names",
                    help="Leave empty for the server's default groups. Admins may assign any group.")
            else:
                groups = st.multiselect("Groups that may read them", options=own_groups, default=own_groups,
                                        help="You can share documents only with groups your key belongs to.")
            submitted = st.form_submit_button("Upload and index", type="primary", icon=":material/upload:")
    if not submitted:
        return
    if not files:
        st.error("Choose at least one file to upload.", icon=":material/error:")
        return
    try:
        accepted = client.upload([(f.name, f.getvalue()) for f in files], groups)
    except ApiError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    jobs.track(accepted["job_id"])
    st.toast(f"Indexing {len(files)} file(s)…", icon=":material/upload:")


def document_table(items: list[dict]) -> None:
    st.dataframe(
        [{"File": d["name"], "Status": "Ready" if d["complete"] else "Incomplete",
          "Groups": d["groups"], "Pages": str(d["pages"]) if d["pages"] else "–", "Chunks": d["chunks"], "Id": d["doc_id"]}
         for d in items],
        hide_index=True,
        width="stretch",
        column_config={
            "File": st.column_config.TextColumn(width="medium"),
            "Status": st.column_config.TextColumn(help="Incomplete: an ingestion of this file did not finish; "
                                                  "upload it again."),
            "Groups": st.column_config.ListColumn(),
            "Pages": st.column_config.TextColumn(alignment="right", help="– for formats without pages."),
            "Chunks": st.column_config.NumberColumn(format="%d", help="Passages stored for search."),
            "Id": st.column_config.TextColumn(width="small"),
        },
    )


def manage(client: ApiClient, items: list[dict]) -> None:
    """Pick one document: download its original, or delete it after a confirmation."""
    by_id = {d["doc_id"]: d for d in items}
    chosen = st.selectbox("Manage a document", options=list(by_id), index=None, key="doc_manage",
                          format_func=lambda doc_id: f"{by_id[doc_id]['name']}  ({doc_id})",
                          placeholder="Choose a document to download or delete")
    if not chosen:
        return
    doc = by_id[chosen]
    left, right = st.columns(2)
    left.download_button("Download original", data=lambda: client.download(chosen), file_name=file_name(doc["name"]),
                         on_click="ignore", icon=":material/download:", key="doc_download", width="stretch")
    if right.button("Delete…", icon=":material/delete:", key="doc_delete", width="stretch"):
        st.session_state[CONFIRM] = chosen
    if st.session_state.get(CONFIRM) != chosen:
        return
    with st.container(border=True):
        st.warning(f"Delete **{doc['name']}**? It disappears from search and answers for everyone "
                   "who could see it; an uploaded original is removed too.", icon=":material/warning:")
        yes, no = st.columns(2)
        if yes.button("Yes, delete it", type="primary", key="doc_delete_yes", width="stretch"):
            st.session_state.pop(CONFIRM, None)
            try:
                client.delete(chosen)
            except ApiError as exc:
                st.error(str(exc), icon=":material/error:")
                return
            st.session_state.pop("doc_manage", None)
            st.toast(f"Deleted {doc['name']}.", icon=":material/delete:")
            st.rerun()
        if no.button("Cancel", key="doc_delete_no", width="stretch"):
            st.session_state.pop(CONFIRM, None)
            st.rerun()


def fetch(client: ApiClient, needle: str) -> dict:
    """One page of the caller's documents matching ``needle`` (a page picker when there are many)."""
    listing = client.documents(name=needle or None, offset=0, limit=PAGE_SIZE)
    if listing["total"] > PAGE_SIZE:
        pages = (listing["total"] + PAGE_SIZE - 1) // PAGE_SIZE
        page = st.number_input("Page", min_value=1, max_value=pages, value=1, step=1, key="doc_page")
        if page > 1:
            listing = client.documents(name=needle or None, offset=(int(page) - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    return listing


def page() -> None:
    client, user = session.client(), session.user() or {}
    st.title("Documents")
    # The first page of the list also tells an admin which groups exist.
    try:
        everything = client.documents(limit=PAGE_SIZE)
    except ApiError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    known_groups = sorted({g for d in everything["items"] for g in d["groups"]})
    upload_form(client, user, known_groups)
    jobs.render_jobs(client)

    st.subheader("Your documents", anchor=False)
    needle = st.text_input("Search documents", placeholder="Search by file name", key="doc_search",
                           label_visibility="collapsed", icon=":material/search:").strip()
    try:
        listing = everything if not needle and everything["total"] <= PAGE_SIZE else fetch(client, needle)
    except ApiError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    items = listing["items"]
    if not items:
        st.info("No documents match this search." if needle else "No documents yet: add some above.",
                icon=":material/info:")
        return
    shown = f", showing {listing['offset'] + 1}–{listing['offset'] + len(items)}" if listing["total"] > len(items) else ""
    st.caption(f"{listing['total']} document(s){shown}")
    document_table(items)
    manage(client, items)


page()
