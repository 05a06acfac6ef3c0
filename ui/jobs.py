"""Upload jobs of this session: progress while they run, per-file results when done."""

from __future__ import annotations

import streamlit as st

from ui.answers import plain
from ui.client import ApiClient, ApiError

JOBS = "upload_jobs"
POLL_SECONDS = 1.0
ACTIVE = ("queued", "running")
OUTCOMES = {
    "queued": "Waiting",
    "added": "Added",
    "updated": "Updated",
    "unchanged": "Unchanged (already stored)",
    "regrouped": "Groups changed",
    "failed": "Failed",
}


def tracked() -> dict[str, dict]:
    """job id -> the job as last seen (newest last)."""
    return st.session_state.setdefault(JOBS, {})


def track(job_id: str) -> None:
    tracked()[job_id] = {"id": job_id, "state": "queued", "files": [], "progress": {}}


def refresh(client: ApiClient) -> bool:
    """Ask the API about unfinished jobs; True when one of them finished just now."""
    finished = False
    for job_id, job in tracked().items():
        if job["state"] not in ACTIVE:
            continue
        try:
            tracked()[job_id] = latest = client.job(job_id)
        except ApiError as exc:
            if exc.status != 404:
                raise
            # The API forgot it (restarted): the documents list tells what was stored.
            tracked()[job_id] = latest = job | {"state": "failed", "message": "The server no longer knows this "
                                                "upload (it restarted); check the document list."}
        finished = finished or latest["state"] not in ACTIVE
    return finished


def summary(job: dict) -> str:
    counts: dict[str, int] = {}
    for f in job.get("files", []):
        counts[f["status"]] = counts.get(f["status"], 0) + 1
    parts = [f"{n} {OUTCOMES.get(status, status).split(' (')[0].lower()}" for status, n in counts.items()]
    return ", ".join(parts) or "no files"


def render_job(job: dict) -> None:
    files = job.get("files", [])
    names = ", ".join(f["name"] for f in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    if job["state"] in ACTIVE:
        progress = job.get("progress") or {}
        total, done = progress.get("files_total") or len(files) or 1, progress.get("files_done", 0)
        chunks = progress.get("chunks_embedded", 0)
        label = ("Waiting to start" if job["state"] == "queued" else
                 f"Processing {done} of {total} file(s)" + (f", {chunks} passages indexed" if chunks else ""))
        st.progress(min(done / total, 1.0), text=f"{label}: {names}")
        return
    failed = [f for f in files if f["status"] == "failed"]
    if job["state"] == "failed" and job.get("message"):
        st.error(f"The upload of {names} failed: {job['message']}", icon=":material/error:")
    elif failed:
        reasons = "\n".join(f"- **{plain(f['name'])}**: {plain(f.get('reason') or 'no reason given')}" for f in failed)
        st.warning(f"Upload finished with problems: {summary(job)}.\n\n{reasons}", icon=":material/warning:")
    else:
        st.success(f"Upload finished: {summary(job)}.", icon=":material/check_circle:")
    if files:
        st.dataframe(
            [{"File": f["name"], "Result": OUTCOMES.get(f["status"], f["status"]),
              "Pages": str(f["pages"]) if f.get("pages") else "–", "Chunks": f.get("chunks") or 0,
              "Reason": f.get("reason") or ""}
             for f in files],
            hide_index=True, width="stretch",
            column_config={"File": st.column_config.TextColumn(width="medium"),
                           "Pages": st.column_config.TextColumn(width="small", alignment="right"),
                           "Chunks": st.column_config.NumberColumn(width="small"),
                           "Reason": st.column_config.TextColumn(width="large")},
        )


def render_jobs(client: ApiClient) -> None:
    """The session's uploads; polls the API every second while one is running."""
    if not tracked():
        return
    active = any(job["state"] in ACTIVE for job in tracked().values())

    @st.fragment(run_every=POLL_SECONDS if active else None)
    def panel() -> None:
        try:
            finished = refresh(client)
        except ApiError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        for job in reversed(list(tracked().values())):
            render_job(job)
        if finished:
            st.rerun(scope="app")  # the document list below shows what the job stored
        if not any(job["state"] in ACTIVE for job in tracked().values()):
            if st.button("Clear finished uploads", icon=":material/clear_all:", key="clear_jobs", type="tertiary"):
                tracked().clear()
                st.rerun(scope="app")

    with st.container(border=True):
        st.subheader("Uploads", anchor=False)
        panel()
