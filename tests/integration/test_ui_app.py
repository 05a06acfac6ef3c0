"""The web UI's pages (Streamlit AppTest) against a RUNNING API: real uvicorn, real store,
real embedding model; the chat tests marked `llm` also use the real vLLM server.

The API without a model server (a free port nothing listens on) is a real fault, not a
fake: it is how the UI's "model down" path is exercised.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pymupdf
import pytest
from streamlit.testing.v1 import AppTest

from api_support import LiveServer, free_port, ingest, make_key
from rag.service import RagService
from rag.settings import Settings, get_settings

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
RUN_TIMEOUT = 120  # one script run may wait on the API (and the model)

HANDBOOK = (
    "Employee handbook\n\n"
    "Vacation. Every employee receives 27 days of paid vacation per year. Unused vacation days "
    "expire at the end of March of the following year.\n\n"
    "Travel. Train travel is booked in second class. Flights need the approval of a director.\n"
).encode()
QUESTION = "How many days of paid vacation does an employee receive per year?"


def two_page_pdf(fact: str) -> bytes:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Project Heron overview. The project started in spring.")
    doc.new_page().insert_text((72, 72), fact)
    data = doc.tobytes()
    doc.close()
    return data


def serve(tmp_path_factory, name: str, settings: Settings):
    """A live API for ``settings`` with three keys: admin, staff (group staff), outsider (group other)."""
    service = RagService(settings)
    live = LiveServer(settings, service).__enter__()
    live.admin = make_key(settings, "admin", None, admin=True)
    live.staff = make_key(settings, "sam", "staff")
    live.outsider = make_key(settings, "olga", "other")
    return live, service


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The API with its model server down (nothing listens on its port)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("ui-api") / "var", _env_file=None,
                        llm_port=free_port(), llm_timeout=5, llm_retries=0)
    live, service = serve(tmp_path_factory, "ui-api", settings)
    with live.client(live.admin) as http:
        ingest(http, {"handbook.txt": HANDBOOK}, groups="staff")
    yield live
    live.__exit__(None, None, None)
    service.close()


@pytest.fixture
def ui(api, monkeypatch):
    """An AppTest of ui/app.py pointed at the API (the UI reads RAG_API_URL through settings)."""
    return app_for(api, monkeypatch)


def app_for(live, monkeypatch) -> AppTest:
    monkeypatch.setenv("RAG_API_URL", live.url)
    get_settings.cache_clear()
    at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
    at.run()
    assert not at.exception
    return at


@pytest.fixture(autouse=True)
def fresh_settings():
    yield
    get_settings.cache_clear()  # the next test must not inherit our RAG_API_URL


def sign_in(at: AppTest, key: str) -> AppTest:
    at.text_input[0].input(key)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


# --- sign in, identity, status -----------------------------------------------------------


def test_sign_in_rejects_a_wrong_key_with_a_sentence(ui):
    sign_in(ui, "rag_not-a-real-key")
    assert texts(ui.error) == ["This API key is not valid or has been revoked."]
    assert "user" not in ui.session_state
    assert texts(ui.title) == ["Ask your documents"]  # still the sign-in page


def test_sign_in_shows_name_and_groups_and_sign_out_forgets_the_key(ui, api):
    sign_in(ui, api.staff)
    sidebar = " ".join(texts(ui.sidebar.markdown) + texts(ui.sidebar.caption))
    assert "sam" in sidebar and "Groups: staff" in sidebar and "admin" not in sidebar
    assert ui.chat_input, "signed in, the chat page is shown"
    # The key is nowhere but in the session's client: not in a widget, not in the URL.
    assert all(api.staff not in str(v) for k, v in ui.session_state.to_dict().items() if k != "api_client")
    assert api.staff not in str(ui.query_params)

    ui.sidebar.button(key="sign_out").click().run()
    assert "api_client" not in ui.session_state and "user" not in ui.session_state
    assert ui.text_input[0].label == "API key"


def test_sidebar_says_in_a_sentence_that_the_model_server_is_down(ui, api):
    sign_in(ui, api.admin)
    status = " ".join(texts(ui.sidebar.markdown))
    assert "API" in status and "Document store" in status and "Language model" in status
    assert any("language model server is not responding" in c for c in texts(ui.sidebar.caption))


def test_sign_in_says_so_when_the_api_is_unreachable(monkeypatch):
    monkeypatch.setenv("RAG_API_URL", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT).run()
    sign_in(at, "rag_anything")
    assert len(at.error) == 1 and "cannot be reached" in at.error[0].value
    assert not at.exception


# --- chat without a model: sources still shown; not found; follow-ups ------------------------


def test_model_down_shows_the_message_and_still_the_retrieved_sources(ui, api):
    sign_in(ui, api.staff)
    ask(ui, QUESTION)
    assert len(ui.warning) == 1 and "language model is unavailable" in ui.warning[0].value
    assert not ui.error
    labels = [e.label for e in ui.expander]
    assert any("handbook.txt" in label for label in labels), labels
    assert any(label.startswith("Answered in") for label in labels)  # timings, collapsed
    passages = " ".join(texts(ui.markdown))
    assert "27 days of paid vacation" in passages


def test_nothing_visible_is_not_found_as_information_not_error(ui, api):
    sign_in(ui, api.outsider)  # group "other" sees no document
    ask(ui, QUESTION)
    assert len(ui.info) == 1 and ui.info[0].value.startswith("Not found in your documents")
    assert any(c.startswith("Not found in the documents you can access (score threshold") for c in texts(ui.caption))
    assert not ui.error and not ui.warning


def test_a_name_no_passage_mentions_is_not_found_and_says_which(ui, api):
    sign_in(ui, api.staff)
    ask(ui, "How many days of paid vacation do Contoso employees get?")
    assert len(ui.info) == 1 and ui.info[0].value.startswith("Not found in your documents")
    assert 'no passage found mentions "Contoso".' in " ".join(texts(ui.caption))
    assert not ui.error and not ui.warning


def test_follow_ups_send_the_conversation_and_new_chat_starts_over(ui, api):
    sign_in(ui, api.staff)
    ask(ui, QUESTION)
    ask(ui, "And when do unused ones expire?")
    chat = ui.session_state["chats"][ui.session_state["open_chat"]]
    first, follow_up = chat.messages[1].answer, chat.messages[3].answer
    # The API rewrites a follow-up only when it received the conversation (condense timing).
    assert first.timings.condense == 0 and follow_up.timings.condense > 0
    assert len(ui.chat_message) == 4

    ui.sidebar.button(key="new_chat").click().run()
    assert len(ui.chat_message) == 0 and texts(ui.title) == ["Ask your documents"]
    ask(ui, QUESTION)
    fresh = ui.session_state["chats"][ui.session_state["open_chat"]].messages[1].answer
    assert fresh.timings.condense == 0

    # Both chats are listed; the first re-opens with its four messages.
    old = ui.sidebar.button(key=f"open-{chat.id}")
    assert old.label.startswith("How many days")
    old.click().run()
    assert len(ui.chat_message) == 4


# --- documents page ----------------------------------------------------------------------------


def documents_page(at: AppTest) -> AppTest:
    at.switch_page("views/documents.py").run()
    assert not at.exception, at.exception
    return at


def wait_for_uploads(at: AppTest, timeout: float = 300) -> list[dict]:
    """Re-run the page (what the browser's 1 s poll does) until the session's uploads finish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = list(at.session_state["upload_jobs"].values())
        if all(job["state"] not in ("queued", "running") for job in jobs):
            return jobs
        time.sleep(0.5)
        at.run()
    raise AssertionError("the upload did not finish")


def table(at: AppTest, column: str) -> list[list]:
    """Every dataframe that has ``column``, as lists of row dicts."""
    return [df.value.to_dict("records") for df in at.dataframe if column in df.value.columns]


def test_upload_shows_progress_then_per_file_results_with_reasons(ui, api):
    sign_in(ui, api.admin)
    documents_page(ui)
    ui.file_uploader[0].set_value([
        ("heron.pdf", two_page_pdf("The launch code of Project Heron is BLUE-FALCON-42."), "application/pdf"),
        ("broken.pdf", b"%PDF-1.7 this is not really a PDF", "application/pdf"),
    ])
    ui.multiselect[0].set_value(["staff", "heron"])
    next(b for b in ui.button if b.label == "Upload and index").click().run()
    assert not ui.error, texts(ui.error)
    jobs = wait_for_uploads(ui)
    assert jobs[0]["state"] == "done"
    assert len(ui.warning) == 1 and "problems" in ui.warning[0].value and "broken.pdf" in ui.warning[0].value
    results = {row["File"]: row for row in table(ui, "Reason")[0]}
    assert results["heron.pdf"]["Result"] == "Added" and results["heron.pdf"]["Pages"] == "2"
    assert results["broken.pdf"]["Result"] == "Failed" and results["broken.pdf"]["Reason"]

    listed = {row["File"]: row for row in table(ui, "Status")[0]}
    assert listed["heron.pdf"]["Status"] == "Ready" and listed["heron.pdf"]["Pages"] == "2"
    assert listed["heron.pdf"]["Chunks"] >= 1 and sorted(listed["heron.pdf"]["Groups"]) == ["heron", "staff"]
    assert "broken.pdf" not in listed


def test_documents_list_search_and_access(ui, api):
    sign_in(ui, api.staff)
    documents_page(ui)
    names = [row["File"] for row in table(ui, "Status")[0]]
    assert "handbook.txt" in names
    ui.text_input(key="doc_search").input("HANDBOOK").run()
    assert [row["File"] for row in table(ui, "Status")[0]] == ["handbook.txt"]
    ui.text_input(key="doc_search").input("no-such-file").run()
    assert texts(ui.info) == ["No documents match this search."]
    # A non-admin may share only with their own groups.
    assert ui.multiselect[0].options == ["staff"] and ui.multiselect[0].value == ["staff"]


def test_outsider_sees_no_documents(monkeypatch, api):
    at = sign_in(app_for(api, monkeypatch), api.outsider)
    documents_page(at)
    assert not table(at, "Status")
    assert texts(at.info) == ["No documents yet: add some above."]


def test_delete_asks_for_confirmation_and_cancel_keeps_the_document(ui, api):
    with api.client(api.admin) as http:
        ingest(http, {"old-memo.txt": b"An outdated memo about the 2019 parking rules and fees."}, groups="staff")
    sign_in(ui, api.staff)
    documents_page(ui)
    doc_id = next(d for d in ui.selectbox(key="doc_manage").options if "old-memo" in d)
    ui.selectbox(key="doc_manage").set_value(doc_id).run()
    ui.button(key="doc_delete").click().run()
    assert any("Delete **old-memo.txt**?" in w for w in texts(ui.warning))

    ui.button(key="doc_delete_no").click().run()
    assert not ui.warning
    assert "old-memo.txt" in [row["File"] for row in table(ui, "Status")[0]]

    ui.button(key="doc_delete").click().run()
    ui.button(key="doc_delete_yes").click().run()
    assert not ui.error, texts(ui.error)
    assert "old-memo.txt" not in [row["File"] for row in table(ui, "Status")[0]]
    with api.client(api.admin) as http:
        assert http.get(f"/v1/documents/{doc_id}").status_code == 404


def test_citation_download_goes_through_the_api_with_the_users_key(api, monkeypatch):
    """What a citation's download button fetches: the original bytes, under the access rule."""
    from ui.client import ApiClient, ApiError

    staff, outsider = ApiClient(api.url, api.staff), ApiClient(api.url, api.outsider)
    doc_id = staff.documents(name="handbook")["items"][0]["doc_id"]
    assert staff.download(doc_id) == HANDBOOK
    with pytest.raises(ApiError) as denied:
        outsider.download(doc_id)
    assert denied.value.status == 404 and str(denied.value) == "No document with this id."


# --- chat with the real model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm_api(tmp_path_factory, llm_server):
    base = Settings(data_dir=tmp_path_factory.mktemp("ui-llm-api") / "var", _env_file=None)
    settings = llm_server.configure(base).model_copy(update={"llm_max_tokens": 64})
    live, service = serve(tmp_path_factory, "ui-llm-api", settings)
    with live.client(live.admin) as http:
        ingest(http, {"handbook.txt": HANDBOOK}, groups="staff")
    yield live
    live.__exit__(None, None, None)
    service.close()


@pytest.mark.llm
def test_chat_streams_an_answer_with_numbered_citations(llm_api, monkeypatch):
    at = sign_in(app_for(llm_api, monkeypatch), llm_api.staff)
    ask(at, QUESTION)
    assert not at.error and not at.warning, texts(at.error) + texts(at.warning)
    message = at.session_state["chats"][at.session_state["open_chat"]].messages[1]
    answer = message.answer
    assert answer.status == "answered" and answer.answer.strip()
    assert answer.citations, "the answer cites its sources"
    # Every [n] in the text has a citation numbered n, shown as an expander labelled [n].
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)}
    numbers = {c.n for c in answer.citations}
    assert markers <= numbers
    labels = [e.label for e in at.expander]
    for c in answer.citations:
        assert any(label.startswith(f"\\[{c.n}\\] handbook.txt") for label in labels), labels
    assert any(label.startswith("Answered in") for label in labels)
    assert len(at.download_button) == len(answer.citations)
    assert answer.answer.replace("$", "\\$") in texts(at.markdown)
