"""The documents page: upload files (a background job with progress), list, search, delete."""

from __future__ import annotations

import streamlit as st

from ui import jobs, session
from ui.answers import file_name
from ui.client import ApiError

PAGE_SIZE = 100
CONFIRM = "confirm_delete"

client = session.client()
user = session.user() or {}

st.title("Documents")

# --- upload ---------------------------------------------------------------------------
with st.container(border=True):
    st.subheader("Upload", anchor=False)
    with st.form("upload", clear_on_submit=True, border=False):
        files = st.file_uploader("Files", accept_multiple_files=True,
                                 help="PDF, Word, PowerPoint, Excel, HTML, text and more; several at once.")
        own_groups = list(user.get("groups") or [])
        if user.get("admin"):
            groups = st.multiselect(
                "Groups that may read them", options=own_groups, default=[], accept_new_options=True,
                placeholder="Type a group name and press Enter",
                help="Leave empty for the server's default groups. Admins may assign any group.")
        else:
            groups = st.multiselect("Groups that may read them", options=own_groups, default=own_groups,
                                    help="You can share documents only with groups your key belongs to.")
        submitted = st.form_submit_button("Upload", type="primary", icon=":material/upload:")
    if submitted:
        if not files:
            st.error("Choose at least one file to upload.", icon=":material/error:")
        else:
            try:
                accepted = client.upload([(f.name, f.getvalue()) for f in files], groups)
            except ApiError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                jobs.track(accepted["job_id"])
                st.toast(f"Uploading {len(files)} file(s)…", icon=":material/upload:")

jobs.render_jobs(client)

# --- list -----------------------------------------------------------------------------
st.subheader("Your documents", anchor=False)
needle = st.text_input("Search documents", placeholder="Part of a file name", key="doc_search",
                       label_visibility="collapsed", icon=":material/search:")
offset = 0
try:
    listing = client.documents(name=needle.strip() or None, offset=0, limit=PAGE_SIZE)
    if listing["total"] > PAGE_SIZE:
        pages = (listing["total"] + PAGE_SIZE - 1) // PAGE_SIZE
        page = st.number_input("Page", min_value=1, max_value=pages, value=1, step=1, key="doc_page")
        offset = (int(page) - 1) * PAGE_SIZE
        if offset:
            listing = client.documents(name=needle.strip() or None, offset=offset, limit=PAGE_SIZE)
except ApiError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

items = listing["items"]
if not items:
    st.info("No documents match this search." if needle.strip() else
            "No documents yet: upload some above.", icon=":material/info:")
    st.stop()

st.caption(f"{listing['total']} document(s)" + (f", showing {offset + 1}–{offset + len(items)}"
                                                 if listing["total"] > len(items) else ""))
st.dataframe(
    [{"File": d["name"], "Status": "Ready" if d["complete"] else "Incomplete",
      "Groups": d["groups"], "Pages": d["pages"] or None, "Chunks": d["chunks"], "Id": d["doc_id"]}
     for d in items],
    hide_index=True,
    width="stretch",
    column_config={
        "File": st.column_config.TextColumn(width="medium"),
        "Status": st.column_config.TextColumn(help="Incomplete: an ingestion of this file did not finish; "
                                              "upload it again."),
        "Groups": st.column_config.ListColumn(),
        "Pages": st.column_config.NumberColumn(format="%d"),
        "Chunks": st.column_config.NumberColumn(format="%d", help="Passages stored for search."),
        "Id": st.column_config.TextColumn(width="small"),
    },
)

# --- one document: download, delete -----------------------------------------------------
by_id = {d["doc_id"]: d for d in items}
chosen = st.selectbox("Manage a document", options=list(by_id), index=None, key="doc_manage",
                      format_func=lambda doc_id: f"{by_id[doc_id]['name']}  ({doc_id})",
                      placeholder="Choose a document to download or delete")
if chosen:
    doc = by_id[chosen]
    left, right = st.columns(2)
    with left:
        st.download_button("Download original", data=lambda: client.download(chosen), file_name=file_name(doc["name"]),
                           on_click="ignore", icon=":material/download:", key="doc_download", width="stretch")
    with right:
        if st.button("Delete…", icon=":material/delete:", key="doc_delete", width="stretch"):
            st.session_state[CONFIRM] = chosen
    if st.session_state.get(CONFIRM) == chosen:
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
                else:
                    st.session_state.pop("doc_manage", None)
                    st.toast(f"Deleted {doc['name']}.", icon=":material/delete:")
                    st.rerun()
            if no.button("Cancel", key="doc_delete_no", width="stretch"):
                st.session_state.pop(CONFIRM, None)
                st.rerun()
