"""A page on another origin must not use an open local server; the console, same-origin, keeps working.

Issue 29's finding, in a real Chromium: `rag serve` on 127.0.0.1 without keys (open by design for a local demo)
took a `fetch(..., {mode: "no-cors", body: formData})` upload from a page on another origin (multipart is a
"simple" request, so no preflight asked first) and the planted document became `ready`. Now the guard refuses
cross-site browser requests to /v1 (403) and the console, under its Content-Security-Policy, still signs in,
creates a knowledge base and ingests an upload. The server runs without a language model (none is needed).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_api import Server, assert_problem, free_port
from tests.test_console import chromium_binary
from tests.test_hostile import _serve

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
expect = sync_api.expect

ATTACK = """<!doctype html><meta charset="utf-8"><title>waiting</title><script>
const form = new FormData();
form.append("file", new Blob(["Planted: the refund window is 400 days."], {type: "text/plain"}), "planted.txt");
fetch("TARGET/v1/kbs/handbook/documents?replace=true", {method: "POST", mode: "no-cors", body: form})
  .then(() => { document.title = "sent"; }, (error) => { document.title = "failed " + error; });
</script>"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _serve(tmp_path_factory.mktemp("open"), None) as s:  # no keys: open, on loopback only
        yield s


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory, server: Server) -> Iterator[int]:
    """A static web server on another port, serving the attacking page; yields its port."""
    root = tmp_path_factory.mktemp("attacker")
    (root / "attack.html").write_text(ATTACK.replace("TARGET", server.url), encoding="utf-8")
    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port),
                                functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield port
    httpd.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary: apt-get install -y chromium fonts-noto-cjk (needs root)")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=binary)
        yield launched
        launched.close()


def _documents(server: Server) -> list[str]:
    resp = httpx.get(server.url + "/v1/kbs/handbook/documents", timeout=10)
    resp.raise_for_status()
    return sorted(d["source"] for d in resp.json()["documents"])


@pytest.mark.parametrize("site", ["127.0.0.1", "localhost"])  # same site (another port) and another site
def test_a_page_of_another_origin_cannot_upload(server: Server, attacker: int, browser: Any, site: str) -> None:
    httpx.post(server.url + "/v1/kbs", json={"name": "handbook"}, timeout=10)
    seen: list[tuple[str, int]] = []
    page = browser.new_page()
    page.on("response", lambda r: seen.append((r.url, r.status)) if "/v1/" in r.url else None)
    page.goto(f"http://{site}:{attacker}/attack.html")
    expect(page).to_have_title("sent", timeout=20_000)  # a no-cors fetch resolves whatever the status
    deadline = time.monotonic() + 3  # long enough for a job to be queued and parsed, had one been accepted
    while time.monotonic() < deadline:
        assert "planted.txt" not in _documents(server)
        time.sleep(0.3)
    page.close()
    assert seen and all(status == 403 for _, status in seen), seen  # refused by the guard, not by the browser


def test_headers_without_a_browser_pass_and_foreign_origins_do_not(server: Server) -> None:
    """The rule behind the browser test: Sec-Fetch-Site decides, else Origin against Host."""
    url = server.url + "/v1/kbs"
    host = server.url.removeprefix("http://")
    assert httpx.get(url).status_code == 200  # curl, SDKs: no browser headers
    for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {"Origin": server.url},
                    {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}):
        assert httpx.get(url, headers=headers).status_code == 200, headers
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": f"http://{host.split(':')[0]}:1"},
                    {"Origin": server.url, "Sec-Fetch-Site": "cross-site"}):
        assert_problem(httpx.get(url, headers=headers), 403, "cross_site_request")
    # Outside /v1 (the console's files, /healthz) nothing is refused: reading them does nothing.
    assert httpx.get(server.url + "/healthz", headers={"Sec-Fetch-Site": "cross-site"}).status_code in (200, 503)


def test_the_console_still_works_under_its_policy(server: Server, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    resp = page.goto(server.url + "/")
    assert resp is not None
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    assert resp.headers["x-frame-options"] == "DENY" and resp.headers["x-content-type-options"] == "nosniff"
    expect(page.locator("#view-kbs")).to_be_visible(timeout=20_000)  # an open server: no sign-in
    page.locator("#kb-name").fill("console-csp")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#kbs-rows tr[data-kb='console-csp']")).to_be_visible()
    (tmp_path / "notes.txt").write_text("The console uploads from its own origin.", encoding="utf-8")
    page.locator("#docs-files").set_input_files([str(tmp_path / "notes.txt")])
    expect(page.locator("#uploads li[data-file='notes.txt']")).to_have_attribute("data-state", "ready",
                                                                                 timeout=120_000)
    page.close()
    assert violations == []

