"""The chat page in a real headless Chromium (Debian's ``chromium`` driven by Playwright).

Streams an answer, shows the route per message, keeps multi-turn history, honours the
manual override and exports the conversation as JSON and Markdown downloads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.unit.serve.support import TEST_KEY

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def page(api_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(120_000)
        pg.goto(api_server.url + "/")
        yield pg
        browser.close()


def _send(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    page.wait_for_function("() => !document.getElementById('send').disabled"
                           " && document.querySelectorAll('.msg.user').length > 0")


def test_streamed_answer_route_history_and_export(page, tmp_path: Path):
    page.fill("#api-key", TEST_KEY)
    page.dispatch_event("#api-key", "change")  # the key unlocks /v1/models: the override list fills in
    page.wait_for_function("() => [...document.querySelectorAll('#route option')].some(o => o.value === 'code')")

    # count how often the answer text changes while it arrives: more than once means it streamed
    page.evaluate("""() => { window.updates = 0; new MutationObserver(() => window.updates++).observe(
        document.getElementById('log'), {subtree: true, childList: true, characterData: true}); }""")
    page.select_option("#route", "code")  # manual override: the modifier streams live
    page.fill("#max-tokens", "24")
    _send(page, "Write a python function that adds two numbers.")
    first = page.locator(".msg.assistant").last
    assert first.locator(".content").inner_text().strip()
    assert "route: code" in first.locator(".route").inner_text() and "override" in first.locator(".route").inner_text()
    assert page.evaluate("window.updates") > 3

    page.select_option("#route", "auto")
    page.fill("#max-tokens", "8")
    _send(page, "Thanks. Now say it in one sentence.")
    assert page.locator(".msg.assistant").count() == 2 and page.locator(".msg.error").count() == 0
    second_route = page.locator(".msg.assistant").last.locator(".route").inner_text()
    assert "route: " in second_route

    with page.expect_download() as dl:
        page.click("#export-json")
    exported = json.loads(Path(dl.value.path()).read_text())
    assert dl.value.suggested_filename.endswith(".json")
    roles = [m["role"] for m in exported["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]  # multi-turn history kept
    assert exported["messages"][1]["route"]["route"] == "code" and exported["messages"][1]["content"]

    with page.expect_download() as dl:
        page.click("#export-md")
    md = Path(dl.value.path()).read_text()
    assert dl.value.suggested_filename.endswith(".md")
    assert md.startswith("# Cogumi conversation") and md.count("**User**") == 2 and "route: code" in md
    page.screenshot(path=str(tmp_path / "chat.png"))
