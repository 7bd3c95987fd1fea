"""The web console in a real browser (Debian's Chromium driven by Playwright) against a real `rag serve` with the
bundled model: sign in, create a KB, upload good and bad files, chat with streaming and citations, a refusal, why
this answer, feedback into `rag feedback export`, sessions, search, reports and offline /docs.

The tests share one server and one page and run in file order. Without Playwright or a Chromium binary they are
skipped with the reason (set-up installs both where it can: `apt-get install chromium` needs root)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.ocr_pages import fonts_installed, render_page
from rag_service.ingestion.splitters import SPLITTERS
from tests.conftest import ROOT, run_rag
from tests.test_api import KEY, LIBRARY, TRAVEL, Server, rag_server

ARTIFACTS = ROOT / "data" / "test-artifacts"
pytestmark = pytest.mark.llm
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
expect = sync_api.expect


def chromium_binary() -> str | None:
    """The real browser binary: Debian's /usr/bin/chromium is a shell wrapper around /usr/lib/chromium/chromium."""
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with rag_server(tmp_path_factory.mktemp("console")) as s:
        yield s


@contextmanager
def console_page(server: Server, *, timeout_ms: int = 30_000, permissions: tuple[str, ...] = ()) -> Iterator[Any]:
    """A Chromium page at 1280x800 (English) that records Content-Security-Policy violations (``page.violations``)
    and requests leaving the server (``page.external``); skips when there is no Chromium."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary: apt-get install -y chromium fonts-noto-cjk (needs root)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
        if permissions:
            context.grant_permissions(list(permissions), origin=server.url)
        page = context.new_page()
        page.set_default_timeout(timeout_ms)
        violations: list[str] = []  # the console must work under its Content-Security-Policy
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.violations = violations  # type: ignore[attr-defined]
        external: list[str] = []
        page.on("request", lambda r: None if r.url.startswith((server.url, "data:", "blob:", "about:"))
                else external.append(r.url))
        page.external = external  # type: ignore[attr-defined]
        yield page
        browser.close()


@pytest.fixture(scope="module")
def page(server: Server) -> Iterator[Any]:
    with console_page(server) as p:
        yield p


def test_sign_in_rejects_a_wrong_key_and_accepts_the_right_one(page: Any, server: Server) -> None:
    page.goto(server.url + "/")
    check = expect
    check(page.locator("#view-signin")).to_be_visible()
    page.get_by_label("API key").fill("wrong-key")
    page.get_by_role("button", name="Sign in").click()
    check(page.locator("#signin-error")).to_contain_text("not accepted")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Sign in").click()
    check(page.locator("#tabs")).to_be_visible()
    check(page.locator("#view-kbs")).to_be_visible()
    assert page.evaluate("localStorage.getItem('rag.apiKey')") == KEY


def test_create_a_kb_and_upload_files_each_with_its_own_outcome(page: Any, tmp_path: Path) -> None:
    check = expect
    page.locator("#kb-name").fill("console")
    # The console offers every splitter the service has, no more.
    offered = page.locator("#kb-splitter option").all_inner_texts()
    assert offered[0] == "default" and sorted(offered[1:]) == sorted(SPLITTERS)
    page.get_by_label("Splitter").select_option("sentence")
    page.get_by_role("button", name="Create").click()
    check(page.locator("#kbs-rows tr[data-kb='console']")).to_be_visible()
    check(page.locator("#docs-panel")).to_be_visible()
    files = {"travel.txt": TRAVEL, "library.txt": LIBRARY, "photo.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 64}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    page.locator("#docs-files").set_input_files([str(tmp_path / n) for n in files])
    for name in ("travel.txt", "library.txt"):
        row = page.locator(f"#uploads li[data-file='{name}']")
        check(row).to_have_attribute("data-state", "ready", timeout=180_000)
    bad = page.locator("#uploads li[data-file='photo.png']")
    check(bad).to_have_attribute("data-state", "failed", timeout=60_000)
    check(bad).to_contain_text("not a readable PNG image")
    check(page.locator("#docs-rows tr")).to_have_count(2)
    check(page.locator("#kbs-rows tr[data-kb='console'] td.num").first).to_have_text("2")


def test_chat_streams_then_shows_a_cited_answer_whose_passage_opens(page: Any) -> None:
    check = expect
    page.locator("#tabs a[data-view='chat']").click()
    page.locator("#chat-kb").select_option("console")
    page.locator("#question").fill("What is the daily meal allowance on business trips?")
    page.evaluate("""() => {
        window.__drafts = 0;
        window.__labels = new Set();
        new MutationObserver(() => {
            const d = document.querySelector('.msg.draft .text');
            if (d && d.textContent.length) {
                window.__drafts += 1;
                window.__labels.add(document.querySelector('.msg.draft .label').textContent);
            }
        }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
    }""")
    page.get_by_role("button", name="Ask").click()
    answer = page.locator(".msg.answer[data-refused='false']").last
    check(answer).to_contain_text("45 euros", timeout=180_000)
    assert page.evaluate("window.__drafts") > 1  # tokens arrived one by one before the checked answer
    # ... each shown as a draft that is not checked yet
    assert page.evaluate("[...window.__labels]") == ["Draft, not checked yet: the checked answer replaces it"]
    chip = answer.locator("button.chip").first
    chip.click()
    check(page.locator("#side")).to_be_visible()
    check(page.locator("#side-body .passage")).to_contain_text("45 euros")
    check(page.locator("#side-body mark")).to_contain_text("45 euros")
    check(page.locator("#side-body")).to_contain_text("travel.txt")
    page.keyboard.press("Escape")
    check(page.locator("#side")).to_be_hidden()


def test_a_question_the_documents_cannot_answer_is_a_refusal_with_related_passages(page: Any) -> None:
    check = expect
    page.locator("#question").fill("Who is the chief executive officer of Aurora Robotics?")
    page.get_by_role("button", name="Ask").click()
    refusal = page.locator(".msg.refusal").last
    check(refusal).to_be_visible(timeout=180_000)
    check(refusal).to_contain_text("Not in the documents")
    check(refusal.locator(".related li").first).to_be_visible()
    assert refusal.locator("button.chip").count() == 0
    page.screenshot(path=str(ARTIFACTS / "console-en.png"))


def test_why_this_answer_shows_the_hits_and_the_exact_prompt(page: Any) -> None:
    check = expect
    answer = page.locator(".msg.answer[data-refused='false']").first
    answer.get_by_role("button", name="Why this answer").click()
    side = page.locator("#side-body")
    check(side.locator("pre.prompt")).to_contain_text("── system ──")
    check(side.locator("pre.prompt")).to_contain_text("daily meal allowance")
    check(side.locator(".tokens")).to_contain_text("prompt")
    check(side.locator(".hit").first).to_contain_text("fused")
    tokens = int(side.locator(".tokens").inner_text().split()[1])
    assert tokens > 50
    page.locator("#side-close").click()


def test_thumbs_down_reaches_feedback_export(page: Any, server: Server) -> None:
    check = expect
    answer = page.locator(".msg.answer[data-refused='false']").first
    answer.get_by_role("button", name="Not helpful").click()
    answer.get_by_label("What was wrong? (optional)").fill("Should mention the taxi rule too")
    answer.locator("form.feedback button[type=submit]").click()
    check(answer).to_contain_text("feedback saved")
    with server.client() as c:
        items = c.get("/v1/feedback", params={"kb": "console"}).json()["feedback"]
    assert [(f["rating"], f["comment"]) for f in items] == [("down", "Should mention the taxi rule too")]
    assert items[0]["citations"] and items[0]["citations"][0]["source"] == "travel.txt"
    out = run_rag("feedback", "export", "--kb", "console", data_dir=server.data_dir).stdout.splitlines()
    (line,) = [json.loads(x) for x in out]
    assert line["kind"] == "feedback-down" and line["answers"] == [] and "45 euros" in line["rated_answer"]
    assert line["question"] == "What is the daily meal allowance on business trips?"


def test_sessions_sidebar_continue_rename_delete(page: Any) -> None:
    check = expect
    sessions = page.locator("#session-list li")
    check(sessions).to_have_count(1)
    page.once("dialog", lambda d: d.accept("Travel questions"))
    sessions.first.get_by_role("button", name="Rename").click()
    check(sessions.first).to_contain_text("Travel questions")
    page.get_by_role("button", name="New conversation").click()
    check(page.locator("#messages li")).to_have_count(0)
    sessions.first.locator("button.open").click()
    check(page.locator("#messages li.msg.user")).to_have_count(2)


def test_the_chinese_interface_answers_a_chinese_question(page: Any) -> None:
    check = expect
    page.locator("#lang").click()
    check(page.locator("#tabs a[data-view='chat']")).to_have_text("对话")
    page.get_by_role("button", name="新会话").click()
    page.locator("#question").fill("每位读者最多可以同时借阅几本书？")
    page.locator("#ask").click()
    answer = page.locator(".msg.answer[data-refused='false']").last
    check(answer).to_contain_text("八", timeout=180_000)
    check(page.locator("#messages .msg.answer .label").last).to_have_text("回答")
    page.screenshot(path=str(ARTIFACTS / "console-zh.png"))
    page.locator("#lang").click()
    check(page.locator("#tabs a[data-view='chat']")).to_have_text("Chat")


def test_search_playground_shows_three_modes_side_by_side(page: Any) -> None:
    check = expect
    page.locator("#tabs a[data-view='search']").click()
    page.locator("#search-kb").select_option("console")
    page.locator("#search-query").fill("meal allowance")
    page.get_by_role("button", name="Search", exact=True).click()
    for mode in ("bm25", "vector", "hybrid"):
        column = page.locator(f"#search-results [data-mode='{mode}']")
        check(column.locator(".hit").first).to_contain_text("travel.txt")
    check(page.locator("#search-results [data-mode='hybrid'] .scores").first).to_contain_text("bm25 #1")


def test_reports_are_listed_and_open(page: Any) -> None:
    check = expect
    page.locator("#tabs a[data-view='reports']").click()
    page.get_by_role("button", name="docs/cmrc").click()
    heading = page.frame_locator("#report-frame").locator("h1")
    check(heading).to_contain_text("Chunking matrix: cmrc2018", timeout=30_000)


def test_phone_width_and_keyboard(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("#tabs a[data-view='chat']").click()
    # The view switches on `hashchange`, a task after the click: wait for it, or focus() lands on a hidden textarea.
    expect(page.locator("#question")).to_be_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 391
    page.locator("#question").focus()
    page.keyboard.type("Taxi rides?")
    assert page.evaluate("document.activeElement.id") == "question"
    expect(page.locator("#question")).to_have_value("Taxi rides?")
    page.locator("#question").fill("")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_delete_a_document_then_the_kb_after_confirming(page: Any) -> None:
    check = expect
    page.locator("#tabs a[data-view='kbs']").click()
    page.locator("#kbs-rows tr[data-kb='console']").get_by_role("button", name="Documents").click()
    check(page.locator("#docs-rows tr")).to_have_count(2)
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_role("button", name="Delete library.txt").click()
    check(page.locator("#docs-rows tr")).to_have_count(2)  # dismissed: nothing deleted
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete library.txt").click()
    check(page.locator("#docs-rows tr")).to_have_count(1)
    check(page.locator("#docs-rows tr[data-source='travel.txt']")).to_be_visible()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete console").click()
    check(page.locator("#kbs-rows tr[data-kb='console']")).to_have_count(0)
    check(page.locator("#kbs-empty")).to_be_visible()


PHOTO_TEXT = ("Greenfield Library rules\n"
              "Members may borrow up to eight books at a time. Books are due back after 21 days and can be renewed "
              "twice online. The reading room on the second floor is open from 9 am to 6 pm on weekdays.")


def phone_photo(path: Path) -> None:
    """A page as a phone takes it: held sideways (the pixels turned, an EXIF tag saying how to show them), a little
    askew, grey paper, JPEG."""
    from PIL import Image

    page = render_page(PHOTO_TEXT, dpi=200, lang="en").rotate(1.5, fillcolor=(235, 235, 228), expand=True)
    sideways = page.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    sideways.save(path, "JPEG", quality=85, exif=exif.tobytes())


def test_a_phone_photo_of_a_page_becomes_a_ready_document_marked_ocr_and_answers(page: Any, tmp_path: Path) -> None:
    if not fonts_installed("en"):
        pytest.skip("no DejaVu fonts to print the page with (bench/ocr_pages.py FONTS)")
    check = expect
    page.locator("#tabs a[data-view='kbs']").click()
    page.locator("#kb-name").fill("photos")
    page.get_by_role("button", name="Create").click()
    check(page.locator("#docs-panel")).to_be_visible()
    photo = tmp_path / "IMG_2041.jpg"
    phone_photo(photo)
    page.locator("#docs-files").set_input_files([str(photo)])
    check(page.locator("#uploads li[data-file='IMG_2041.jpg']")).to_have_attribute("data-state", "ready",
                                                                                   timeout=180_000)
    row = page.locator("#docs-rows tr[data-source='IMG_2041.jpg']")
    check(row.locator("td").nth(3)).to_have_text("1 OCR")
    check(row.locator(".ocr")).to_have_attribute("title", "1 of 1 pages read by OCR (text recognised in images)")
    page.locator("#tabs a[data-view='chat']").click()
    page.locator("#chat-kb").select_option("photos")
    page.locator("#question").fill("How many books may members borrow at a time?")
    page.get_by_role("button", name="Ask").click()
    answer = page.locator(".msg.answer[data-refused='false']").last
    check(answer).to_contain_text("eight", timeout=180_000)
    answer.locator("button.chip").first.click()
    check(page.locator("#side-body")).to_contain_text("IMG_2041.jpg · page 1 · read by OCR")
    check(page.locator("#side-body .passage")).to_contain_text("borrow up to eight books")
    page.keyboard.press("Escape")


def test_api_docs_work_offline(page: Any, server: Server) -> None:
    check = expect
    page.goto(server.url + "/docs")
    check(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=30_000)
    check(page.locator(".swagger-ui")).to_contain_text("/v1/feedback")
    assert not page.external, page.external  # type: ignore[attr-defined]
    assert not page.violations, page.violations  # type: ignore[attr-defined]
    html = httpx.get(server.url + "/docs").text
    assert "cdn" not in html.lower() and "/static/swagger/swagger-ui-bundle.js" in html
