"""End to end in a real browser: Debian's Chromium (driven by Playwright) against the real
stack: the REST API (real store, real embedding model), the real vLLM CPU server, and
the web UI started with `rag ui`.

It signs in, uploads a generated two-page PDF whose page 2 holds a distinctive fact,
waits for the ingestion job, asks about the fact, waits for the streamed answer, opens
the citation of page 2 and checks the file name and page, downloads the original
through the citation, and saves screenshots under test-artifacts/. With
RAG_UPDATE_SCREENSHOT=1 it also refreshes docs/screenshot-chat.png (the README's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pymupdf
import pytest

from rag.service import RagService
from rag.settings import Settings
from tests.integration.api_support import LiveServer, free_port, make_key

pytestmark = [pytest.mark.e2e, pytest.mark.llm]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
README_SCREENSHOT = ROOT / "docs" / "screenshot-chat.png"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FACT = "The launch code of Project Heron is BLUE-FALCON-42."
QUESTION = "What is the launch code of Project Heron?"
UI_START_TIMEOUT = 120
ANSWER_TIMEOUT = 240_000  # ms: retrieval, an answer from the CPU model, on a busy 2-core box


def chromium() -> str:
    """The Debian Chromium binary; a missing browser is a failure, never a skip."""
    path = shutil.which("chromium")
    if not path:
        pytest.fail("Chromium is not installed: run `make browser` (apt-get install -y chromium); "
                    "the browser test needs it.")
    return path


def heron_pdf(path: Path) -> Path:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Quarterly newsletter. The canteen menu changes every Monday.")
    doc.new_page().insert_text((72, 72), FACT)
    doc.save(path)
    doc.close()
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory, llm_server):
    """API + vLLM + store, and the web UI as `rag ui` would run it; yields (ui_url, admin key)."""
    base = Settings(data_dir=tmp_path_factory.mktemp("e2e") / "var", _env_file=None)
    settings = llm_server.configure(base).model_copy(update={"llm_max_tokens": 64})
    service = RagService(settings)
    with LiveServer(settings, service) as api:
        admin = make_key(settings, "dana.admin", "staff", admin=True)
        port = free_port()
        env = dict(os.environ, RAG_API_URL=api.url, RAG_DATA_DIR=str(settings.data_dir), RAG_UI_HOST="127.0.0.1")
        log = open(settings.data_dir / "ui.log", "w")  # noqa: SIM115 - closed below
        ui = subprocess.Popen([sys.executable, "-m", "rag.cli", "ui", "--port", str(port)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(f"{url}/_stcore/health", ui, settings.data_dir / "ui.log")
            yield url, admin
        finally:
            ui.terminate()
            try:
                ui.wait(15)
            except subprocess.TimeoutExpired:
                ui.kill()
                ui.wait()
            log.close()
    service.close()


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + UI_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"`rag ui` exited ({process.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"`rag ui` did not answer within {UI_START_TIMEOUT} s:\n{log.read_text()}")


def save_readme_screenshot(source: Path) -> None:
    """A small PNG for the README (256 colours)."""
    from PIL import Image

    README_SCREENSHOT.parent.mkdir(exist_ok=True)
    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            README_SCREENSHOT, optimize=True)


def test_sign_in_upload_ask_and_open_the_citation(stack, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, admin_key = stack
    pdf = heron_pdf(tmp_path / "heron-brief.pdf")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 860}, accept_downloads=True)
        page.set_default_timeout(60_000)
        try:
            # Sign in: the key goes in a password field and nowhere into the URL.
            page.goto(url)
            page.get_by_label("API key", exact=True).fill(admin_key)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("dana.admin")).to_be_visible()
            assert admin_key not in page.url

            # Upload and wait for the ingestion job.
            page.get_by_role("link", name="Documents").click()
            page.locator("input[type=file]").set_input_files(str(pdf))
            expect(page.get_by_text("heron-brief.pdf").first).to_be_visible()
            page.get_by_role("button", name="Upload and index").click()
            expect(page.get_by_text("Upload finished: 1 added.")).to_be_visible(timeout=ANSWER_TIMEOUT)
            expect(page.get_by_text("1 document(s)")).to_be_visible(timeout=60_000)  # the list shows the new file
            page.wait_for_timeout(1000)  # let the tables draw before the picture
            page.screenshot(path=ARTIFACTS / "documents.png")

            # Ask; the answer streams in, then its sources and timings appear.
            page.get_by_role("link", name="Chat").click()
            question = page.get_by_placeholder("Ask a question about your documents")
            question.fill(QUESTION)
            question.press("Enter")
            answer = page.get_by_test_id("stChatMessage").nth(1)
            expect(answer.get_by_text("Answered in")).to_be_visible(timeout=ANSWER_TIMEOUT)
            assert answer.get_by_test_id("stMarkdownContainer").first.inner_text().strip()

            # Open the citation of page 2: file name, page, and the passage with the fact.
            citation = answer.get_by_test_id("stExpander").filter(has_text="heron-brief.pdf · page 2").first
            expect(citation).to_be_visible()
            citation.locator("summary").click()
            expect(citation.get_by_text("File: heron-brief.pdf")).to_be_visible()
            expect(citation.get_by_text("Page: 2")).to_be_visible()
            expect(citation.get_by_text("BLUE-FALCON-42")).to_be_visible()

            # The citation's download fetches the original through the API.
            with page.expect_download() as download_info:
                citation.get_by_role("button", name="Download heron-brief.pdf").click()
            download = download_info.value
            assert download.suggested_filename == "heron-brief.pdf"
            assert Path(download.path()).read_bytes() == pdf.read_bytes()

            shot = ARTIFACTS / "chat.png"
            page.screenshot(path=shot)
            if os.environ.get("RAG_UPDATE_SCREENSHOT") == "1":
                save_readme_screenshot(shot)
        except Exception:
            page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
            raise
        finally:
            browser.close()
