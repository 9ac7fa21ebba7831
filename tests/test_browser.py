"""The chat page in a real browser: Playwright driving Debian's Chromium against the real server.

Screenshots go to test-artifacts/. Skips (with the reason) only where Chromium or
Playwright is missing; .ci/run installs Chromium.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _serve(index_dir: Path, **env_vars: str):
    port = free_port()
    exe = Path(sys.executable).with_name("article-qa")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env_vars}
    proc = subprocess.Popen([str(exe), "serve", "--index", str(index_dir), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                    pytest.fail(f"server did not start:\n{out[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def server(index_copy):
    with _serve(index_copy) as url:
        yield url


READ_KEY = "reader-key-for-the-test"


@pytest.fixture()
def keyed_server(index_copy):
    with _serve(index_copy, ARTICLE_QA_READ_API_KEY=READ_KEY) as url:
        yield url


@pytest.fixture()
def page():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent; install it with `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install playwright)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        pg = browser.new_page(viewport={"width": 390, "height": 844})  # phone width
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
        yield pg
        browser.close()
        assert not errors, errors


def _ask(page, question: str, n: int):
    from playwright.sync_api import expect  # present: the page fixture skips without it

    page.fill("#question", question)
    page.keyboard.press("Enter")  # keyboard-friendly: Enter submits
    turn = page.locator("li.turn.assistant").nth(n - 1)
    turn.locator(".reply").wait_for(timeout=60_000)
    # Not page.wait_for_function: when its first check fails it polls by evaluating a string
    # in the page, which the page's CSP (no 'unsafe-eval') refuses. expect() polls from
    # Playwright's own isolated world.
    expect(turn).to_have_attribute("data-done", "true", timeout=60_000)
    return turn


def test_chat_page_streams_cited_answers(server, page):
    page.goto(server + "/")
    turn = _ask(page, "how many troops were reported?", 1)
    assert "disagree" in turn.locator(".reply").inner_text()
    assert turn.locator(".disagree li").count() >= 2
    first = turn.locator("button.citation").first
    assert first.locator(".num").inner_text() == "[1]"
    assert first.locator(".source").inner_text().strip()
    mark = first.locator("mark").inner_text()
    assert any(ch.isdigit() for ch in mark) and mark in turn.locator(".reply").inner_text()
    assert "Confidence" in turn.locator(".meta").inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-answer.png"), full_page=True)

    follow = _ask(page, "and how many more were sent later?", 2)
    assert "1,000 to 3,000" in follow.locator(".reply").inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-follow-up.png"), full_page=True)

    # Open a citation: the article with the quoted sentence highlighted and in view.
    citation = follow.locator("button.citation").first
    span = citation.locator("mark").inner_text()
    citation.click()
    dialog = page.locator("dialog#article")
    dialog.wait_for(state="visible")
    quoted = dialog.locator("#quoted")
    assert quoted.locator("mark").inner_text() == span
    assert quoted.is_visible()
    assert page.evaluate("""() => { const r = document.getElementById('quoted')
        .getBoundingClientRect(); const d = document.getElementById('article')
        .getBoundingClientRect(); return r.bottom > d.top && r.top < d.bottom; }""")
    page.screenshot(path=str(ARTIFACTS / "chat-article.png"))
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")


def test_chat_page_escapes_text_and_shows_abstention_and_errors(server, page):
    page.goto(server + "/")
    hostile = "<img src=x onerror=alert(1)>"
    turn = _ask(page, hostile, 1)
    assert page.locator("li.turn.user").first.inner_text() == hostile
    assert page.locator("#log img").count() == 0
    assert "could not find an answer" in turn.locator(".reply").inner_text()
    assert turn.locator(".badge.abstain").is_visible()
    page.screenshot(path=str(ARTIFACTS / "chat-abstain-escaped.png"), full_page=True)
    # A server error is shown, not swallowed (over the size limit -> 422 detail).
    page.fill("#question", "x" * 2000)
    page.evaluate("document.getElementById('question').value = 'y'.repeat(21000)")
    page.keyboard.press("Enter")
    page.locator("#error").wait_for(state="visible", timeout=30_000)
    assert "limit" in page.locator("#error").inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-error.png"))


def test_chat_page_asks_for_the_read_key(keyed_server, page):
    page.goto(keyed_server + "/")
    page.fill("#question", "Where have North Korean troops seen combat?")
    page.keyboard.press("Enter")
    key_form = page.locator("#key-form")
    key_form.wait_for(state="visible", timeout=30_000)
    # Not an error and not an answer: the question is kept until a key is given.
    assert page.locator("li.turn").count() == 0 and page.locator("#error").is_hidden()
    assert page.evaluate("document.activeElement.id") == "key"
    page.screenshot(path=str(ARTIFACTS / "chat-key.png"))

    page.fill("#key", "not-the-key")
    page.keyboard.press("Enter")
    page.locator("#key-form label", has_text="not accepted").wait_for(timeout=30_000)
    assert key_form.is_visible() and page.locator("li.turn").count() == 0

    page.fill("#key", READ_KEY)
    page.keyboard.press("Enter")
    page.locator("li.turn.assistant[data-done='true']").wait_for(timeout=60_000)
    assert key_form.is_hidden()
    turn = page.locator("li.turn.assistant").first
    assert "Kursk" in turn.locator(".reply").inner_text()
    assert page.locator("li.turn.user").first.inner_text().startswith("Where have")
    # The article behind a citation is read with the same key.
    turn.locator("button.citation").first.click()
    page.locator("dialog#article").wait_for(state="visible")
    assert page.locator("#error").is_hidden()
