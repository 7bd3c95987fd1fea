"""The console with teams, in a real browser (Debian's Chromium driven by Playwright) against a real `rag serve` whose
LLM is the scripted one (tests/fakes.py): a reader sees only the knowledge base granted to them and none of the
actions they may not take, and still gets an answer, which a reopened conversation shows again with its chips and a
refusal's related passages (kept inside their card at 1280 px); an admin adds a key on the admin page, copies it
once, revokes it, and finds both in the audit trail; a KB's manager grants and takes access on the KB view.

The users, keys and grants are set up over the REST API with the operator key; what the page did is checked over
HTTP with the keys themselves. The tests share one server and one page and run in file order. Without Playwright or
a Chromium binary they are skipped with the reason, as in test_console.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fakes import ScriptedLLM, ScriptedServer
from tests.test_api import KEY, Server, ingest, rag_server

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
expect = sync_api.expect

from tests.test_console import ARTIFACTS, console_page  # noqa: E402  (after the skip: that module needs Playwright too)

HR = (b"Northwind HR handbook: every employee gets 25 days of paid annual leave a year. "
      b"Leave requests go to your manager two weeks ahead.")
ENG = b"Northwind engineering: production deploys happen on Tuesdays and Thursdays after the 10:00 stand-up."
LEAVE = "How many days of annual leave does an employee get?"
LEAVE_ANSWER = "Every employee gets 25 days of paid annual leave a year [1]."
CONFIDENT = {"gate": 0.9, "passage_gate": 0.9, "evidence": 0.9}
PARKING = "Where can Northwind employees park their cars?"
REFUSAL = "I cannot find the answer in the provided documents."


@dataclass
class Team:
    reader: str  # rita's key: read on 'hr' only
    admin: str  # adam's key


@pytest.fixture(scope="module")
def generator() -> Iterator[ScriptedServer]:
    with ScriptedServer() as g:
        yield g


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, generator: ScriptedServer) -> Iterator[Server]:
    env = {"RAG_LLM_BASE_URL": generator.url, "RAG_TRANSLATE_QUERY": "false"}
    with rag_server(tmp_path_factory.mktemp("console-teams"), KEY, None, **env) as s:
        yield s


@pytest.fixture(scope="module")
def team(server: Server) -> Team:
    """KBs 'hr' and 'eng' with a document each; reader rita (read on 'hr') and admin adam, each with a key."""
    with server.client(timeout=60) as c:
        ingest(c, "hr", ("leave.txt", HR))
        ingest(c, "eng", ("deploys.txt", ENG))
        keys = {}
        for name, role in (("rita", "reader"), ("adam", "admin")):
            assert c.post("/v1/users", json={"name": name, "role": role}).status_code == 201
            created = c.post("/v1/keys", json={"user": name})
            assert created.status_code == 201, created.text
            keys[name] = created.json()["key"]
        assert c.post("/v1/kbs/hr/grants", json={"user": "rita", "level": "read"}).status_code == 200
    return Team(reader=keys["rita"], admin=keys["adam"])


def me(server: Server, key: str) -> httpx.Response:
    with server.client(key=key) as c:
        return c.get("/v1/me")


def readable(server: Server, key: str) -> list[str]:
    with server.client(key=key) as c:
        return [kb["name"] for kb in c.get("/v1/kbs").raise_for_status().json()["kbs"]]


@pytest.fixture(scope="module")
def page(server: Server, team: Team) -> Iterator[Any]:
    with console_page(server, timeout_ms=20_000, permissions=("clipboard-read", "clipboard-write")) as p:
        yield p


def sign_in(page: Any, key: str) -> None:
    expect(page.locator("#view-signin")).to_be_visible()
    page.locator("#signin-key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#tabs")).to_be_visible()


def test_a_reader_sees_only_the_kb_granted_and_no_action_they_may_not_take(
        page: Any, server: Server, team: Team, generator: ScriptedServer) -> None:
    check = expect
    page.goto(server.url + "/")
    sign_in(page, team.reader)
    check(page.locator("#whoami")).to_be_visible()
    check(page.locator("#whoami-name")).to_have_text("rita")
    check(page.locator("#whoami-role")).to_have_text("reader")
    check(page.locator("#kbs-rows tr[data-kb='hr']")).to_be_visible()
    check(page.locator("#kbs-rows tr")).to_have_count(1)  # 'eng' is not even in the page
    check(page.locator("#kbs-rows tr[data-kb='hr'] td.access")).to_have_text("read")
    check(page.locator("#kb-form")).to_be_hidden()
    for tab in ("kbs", "chat", "search"):
        check(page.locator(f"#tabs a[data-view='{tab}']")).to_be_visible()
    check(page.locator("#tabs a[data-view='reports']")).to_be_hidden()
    check(page.locator("#tabs a[data-view='admin']")).to_be_hidden()

    page.locator("#kbs-rows tr[data-kb='hr']").get_by_role("button", name="Documents").click()
    check(page.locator("#docs-rows tr[data-source='leave.txt']")).to_be_visible()
    check(page.locator("#docs-rows tr")).to_have_count(1)
    check(page.locator("#drop")).to_be_hidden()
    check(page.locator("#docs-files")).to_be_hidden()
    check(page.locator("#grants-panel")).to_be_hidden()
    # No delete button is offered at all, for the KB or its document: not merely hidden, not rendered.
    check(page.locator("#kbs-rows button, #docs-rows button").filter(has_text="Delete")).to_have_count(0)
    check(page.get_by_role("button", name="Delete")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "console-reader.png"))

    # An admin view asked for by its address is not shown: the KB list is, and the address says so.
    page.goto(server.url + "/#admin")
    page.reload()
    check(page.locator("#view-kbs")).to_be_visible()
    check(page.locator("#view-admin")).to_be_hidden()
    assert page.evaluate("location.hash") == "#kbs"

    # ... and the reader can still ask 'hr' a question.
    generator.llm = llm = ScriptedLLM(answer_for=[("annual leave", LEAVE_ANSWER)], yes=CONFIDENT)
    page.locator("#tabs a[data-view='chat']").click()
    check(page.locator("#chat-kb option")).to_have_text(["hr"])
    page.locator("#question").fill(LEAVE)
    page.get_by_role("button", name="Ask").click()
    answer = page.locator(".msg.answer[data-refused='false']").last
    check(answer).to_contain_text("25 days of paid annual leave")
    check(answer.locator("button.chip")).to_have_count(1)
    assert "answer" in llm.kinds() and generator.errors == []
    with server.client() as c:  # the conversation is rita's
        (session,) = c.get("/v1/sessions", params={"kb": "hr"}).json()["sessions"]
    with server.client(key=team.reader) as c:
        assert [s["id"] for s in c.get("/v1/sessions", params={"kb": "hr"}).json()["sessions"]] == [session["id"]]


def related_outside(page: Any, refusal: Any) -> list[str]:
    """The related-passage lines of ``refusal`` that reach past its card or the conversation's (at this width)."""
    cards = [refusal.bounding_box(), page.locator(".conversation").bounding_box()]
    out = []
    for line in refusal.locator(".related li button").all():
        box = line.bounding_box()
        if any(box["x"] < c["x"] - 0.5 or box["x"] + box["width"] > c["x"] + c["width"] + 0.5 for c in cards):
            out.append(f"{line.inner_text()!r}: {box} outside {cards}")
    return out


def test_a_reopened_conversation_shows_its_chips_and_related_passages_which_stay_in_their_card(
        page: Any, server: Server, generator: ScriptedServer) -> None:
    """Rita's conversation (the cited answer above) gets a refusal, the page is reloaded, and the conversation
    reopened from the sidebar shows what the live answers showed: the chip opens its passage with the sentence
    the answer relies on marked, the refusal lists its related passages; at 1280 px those lines end inside
    their card, with the passage panel open or not."""
    check = expect
    generator.llm = ScriptedLLM(condensed=[PARKING], answers=[REFUSAL], yes={"gate": 0.2})
    page.locator("#question").fill(PARKING)
    page.get_by_role("button", name="Ask").click()
    refusal = page.locator(".msg.refusal").last
    check(refusal.locator(".related li")).to_have_count(1)
    check(refusal.locator(".related li")).to_contain_text("leave.txt")
    assert related_outside(page, refusal) == []

    page.reload()
    check(page.locator("#view-chat")).to_be_visible()
    check(page.locator("#messages li")).to_have_count(0)
    conversation = page.locator("#session-list li button.open")
    check(conversation).to_have_count(1)
    conversation.click()
    check(page.locator("#messages li.msg.user")).to_have_count(2)
    answer = page.locator(".msg.answer[data-refused='false']")
    check(answer).to_contain_text("25 days of paid annual leave")
    chip = answer.locator("button.chip")
    check(chip).to_have_count(1)
    check(chip).to_have_text("1")
    chip.click()
    check(page.locator("#side")).to_be_visible()
    check(page.locator("#side-body")).to_contain_text("leave.txt")
    check(page.locator("#side-body mark")).to_contain_text("25 days of paid annual leave")
    refusal = page.locator(".msg.refusal[data-refused='true']")
    check(refusal).to_contain_text(REFUSAL)
    check(refusal.locator("button.chip")).to_have_count(0)
    check(refusal.locator(".related li")).to_have_count(1)
    assert related_outside(page, refusal) == []  # the panel open: the conversation is narrower
    page.screenshot(path=str(ARTIFACTS / "console-reopened.png"))
    refusal.locator(".related li button").click()
    check(page.locator("#side-body .passage")).to_contain_text("two weeks ahead")
    # "Why this answer" of a reopened answer: its tokens and claims (the trace, with the prompt, is not kept).
    answer.get_by_role("button", name="Why this answer").click()
    check(page.locator("#side-body .tokens")).to_contain_text("prompt")
    check(page.locator("#side-body li")).to_contain_text(["✓ Every employee gets 25 days"])
    check(page.locator("#side-body pre.prompt")).to_have_count(0)
    page.locator("#side-close").click()

    # An answer written before sessions kept evidence (its row without it) still opens, as plain text.
    with sqlite3.connect(server.data_dir / "sessions.sqlite3") as db:
        assert db.execute("UPDATE messages SET answer = NULL WHERE seq = 2").rowcount == 1
    page.get_by_role("button", name="New conversation").click()
    check(page.locator("#messages li")).to_have_count(0)
    conversation.click()
    check(page.locator("#messages li.msg")).to_have_count(4)
    check(page.locator(".msg.answer").first).to_contain_text("25 days of paid annual leave a year [1].")
    check(page.locator(".msg.answer button.chip")).to_have_count(0)
    check(page.locator(".msg.refusal .related li")).to_have_count(1)
    assert not page.violations, page.violations  # type: ignore[attr-defined]


def test_an_admin_creates_a_key_sees_it_once_revokes_it_and_finds_both_in_the_audit(
        page: Any, server: Server, team: Team) -> None:
    check = expect
    page.locator("#signout").click()
    check(page.locator("#messages li")).to_have_count(0)  # nothing of rita's stays on the page
    sign_in(page, team.admin)
    check(page.locator("#whoami-name")).to_have_text("adam")
    check(page.locator("#whoami-role")).to_have_text("admin")
    page.locator("#tabs a[data-view='kbs']").click()
    check(page.locator("#kbs-rows tr")).to_have_count(2)
    check(page.locator("#kb-form")).to_be_visible()
    check(page.locator("#tabs a[data-view='reports']")).to_be_visible()
    page.locator("#tabs a[data-view='admin']").click()

    rita = page.locator("#users-rows tr[data-user='rita']")
    check(rita).to_be_visible()
    check(rita.locator("td").nth(1)).to_have_text("reader")
    check(rita.locator("td").nth(3)).to_have_text("1")
    check(page.locator("#users-rows tr")).to_have_count(2)
    check(page.locator("#users-rows tr[data-user='adam'] button")).to_have_count(0)  # adam cannot lock himself out

    page.locator("#key-user").select_option("rita")
    page.locator("#key-days").fill("7")
    page.get_by_role("button", name="Create key").click()
    shown = page.locator("#new-key")
    check(shown).to_be_visible()
    check(shown).to_contain_text("Shown only once")
    check(shown.locator("#new-key-user")).to_have_text("rita")
    key = page.locator("#new-key-text").input_value()
    assert key.startswith("rag_") and key not in (team.reader, team.admin)
    key_id = key[4:16]
    page.get_by_role("button", name="Copy").click()
    check(page.locator("#new-key-copied")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.screenshot(path=str(ARTIFACTS / "console-admin.png"), full_page=True)

    assert me(server, key).json() == {"user": "rita", "role": "reader", "key_id": key_id, "admin": False,
                                      "can_create_kbs": False}
    row = page.locator(f"#keys-rows tr[data-key='{key_id}']")
    check(row).to_have_attribute("data-status", "active")
    check(row).to_contain_text(f"rag_{key_id}")
    check(row.locator("td").nth(3)).not_to_have_text("never")  # it expires
    check(rita.locator("td").nth(3)).to_have_text("2")
    assert key[16:] not in page.locator("#keys-rows").inner_text()  # the list never holds the secret

    page.get_by_role("button", name="I have copied it").click()
    check(shown).to_be_hidden()
    assert page.locator("#new-key-text").input_value() == ""
    assert key[16:] not in page.content()  # gone from the page once dismissed

    page.once("dialog", lambda d: d.dismiss())
    row.get_by_role("button", name=f"Revoke rag_{key_id}").click()
    check(row).to_have_attribute("data-status", "active")  # dismissed: still working
    assert me(server, key).status_code == 200
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name=f"Revoke rag_{key_id}").click()
    check(row).to_have_attribute("data-status", "revoked")
    check(row.get_by_role("button")).to_have_count(0)
    check(rita.locator("td").nth(3)).to_have_text("1")
    assert me(server, key).status_code == 401
    assert me(server, team.reader).json()["user"] == "rita"  # her other key still works

    # The trail, newest first, filtered to key events: adam revoked then created this key; the operator made theirs.
    page.locator("#audit-action").select_option("key")
    events = page.locator("#audit-rows tr")
    check(events).to_have_count(4)
    rows = [(r.get_attribute("data-action"), r.locator("td.actor").inner_text(), r.locator("td.target").inner_text())
            for r in events.all()]
    assert rows[:2] == [("key.revoke", "adam", key_id), ("key.create", "adam", key_id)]
    assert [(a, who) for a, who, _ in rows[2:]] == [("key.create", "operator")] * 2
    check(events.nth(1)).to_contain_text("user: rita")
    page.locator("#audit-action").select_option("")
    check(page.locator("#audit-rows tr[data-action='kb.create']")).to_have_count(2)


def test_a_manager_grants_and_takes_access_on_the_kb_view_and_sees_the_api_s_refusals(
        page: Any, server: Server, team: Team) -> None:
    check = expect
    page.locator("#tabs a[data-view='kbs']").click()
    page.locator("#kbs-rows tr[data-kb='eng']").get_by_role("button", name="Documents").click()
    panel = page.locator("#grants-panel")
    check(panel).to_be_visible()
    check(panel.locator("#grants-kb")).to_have_text("eng")
    check(panel.locator("#grants-empty")).to_be_visible()
    panel.locator("#grant-user").fill("rita")
    panel.locator("#grant-level").select_option("write")
    panel.get_by_role("button", name="Grant access").click()
    # problem+json's detail, as the API words it: a reader can only be granted read.
    check(panel.locator("#grant-error")).to_contain_text("readers can only be granted read")
    assert readable(server, team.reader) == ["hr"]
    panel.locator("#grant-level").select_option("read")
    panel.get_by_role("button", name="Grant access").click()
    check(panel.locator("#grants-rows tr[data-user='rita']")).to_contain_text("read")
    check(panel.locator("#grant-error")).to_have_text("")
    assert sorted(readable(server, team.reader)) == ["eng", "hr"]
    page.once("dialog", lambda d: d.accept())
    panel.get_by_role("button", name="Remove access: rita").click()
    check(panel.locator("#grants-rows tr")).to_have_count(0)
    assert readable(server, team.reader) == ["hr"]


def test_the_admin_page_at_phone_width_by_keyboard_and_in_chinese_and_a_user_disabled(
        page: Any, server: Server, team: Team) -> None:
    check = expect
    page.locator("#tabs a[data-view='admin']").click()
    check(page.locator("#users-rows tr")).to_have_count(2)
    page.set_viewport_size({"width": 390, "height": 844})
    check(page.locator("#view-admin")).to_be_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 391
    page.screenshot(path=str(ARTIFACTS / "console-admin-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    # The keyboard reaches the form: the user's name, Tab to the role, Enter adds them.
    page.locator("#user-name").focus()
    page.keyboard.type("erin")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "user-role"
    page.locator("#user-role").select_option("editor")
    page.locator("#user-name").press("Enter")
    check(page.locator("#users-rows tr[data-user='erin'] td").nth(1)).to_have_text("editor")
    # Disabling rita stops her keys at once; enabling her brings them back.
    rita = page.locator("#users-rows tr[data-user='rita']")
    page.once("dialog", lambda d: d.accept())
    rita.get_by_role("button", name="Disable rita").click()
    check(rita).to_have_attribute("data-disabled", "true")
    check(rita.locator("td").nth(2)).to_have_text("disabled")
    assert me(server, team.reader).status_code == 401
    rita.get_by_role("button", name="Enable rita").click()
    check(rita).to_have_attribute("data-disabled", "false")
    assert me(server, team.reader).json()["user"] == "rita"
    check(page.locator("#audit-rows tr[data-action='user.update']")).to_have_count(2)
    page.locator("#lang").click()
    check(page.locator("#tabs a[data-view='admin']")).to_have_text("用户与密钥")
    check(page.locator("#users-rows tr[data-user='erin'] td").nth(1)).to_have_text("编辑")
    check(page.locator("#whoami-role")).to_have_text("管理员")
    page.locator("#lang").click()
    check(page.locator("#tabs a[data-view='admin']")).to_have_text("People and keys")
    assert not page.violations, page.violations  # type: ignore[attr-defined]
