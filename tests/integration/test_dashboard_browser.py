"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright against a live
stack (broker, processors, edge) and the local page server.

One browser and one stack for the module keep this lean. Skipped only where
``/usr/bin/chromium`` is absent (``.ci/run`` installs it, so CI never skips).
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from scrapeledger.settings import Settings
from tests.support.stack import Stack, eventually

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 60_000
SCREENSHOT = os.environ.get("SCRAPELEDGER_SCREENSHOT")
"""Where to save the screenshot besides the test's own directory (``docs/dashboard.png`` to
refresh the one the docs show)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One browser for all of this module's tests (the only ones that use one). Module scope,
    not session: Playwright's sync API keeps an event loop running in this thread while it is
    open, and later tests that call ``asyncio.run`` would find it."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def live_stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, pages: str) -> Iterator[Stack]:
    """A whole stack of this module's own."""
    workdir = tmp_path_factory.mktemp("dashboard")
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}-",
                        state_dir=str(workdir / "state"), partitions=3, delivery_partitions=8)
    stack = Stack(settings, workdir, env={"SCRAPER_MAX_ATTEMPTS": "3"})
    try:
        stack.processors()
        yield stack
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def live(live_stack: Stack) -> str:
    """The HTTP base URL of the stack's edge (API keys off)."""
    return live_stack.edge().replace("ws://", "http://").rstrip("/")


KEY_A, KEY_B = secrets.token_urlsafe(24), secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def keyed(live_stack: Stack) -> str:
    """A second edge on the same ledger with API keys on (alice, bob)."""
    url = live_stack.edge("edge-keys", SCRAPELEDGER_API_KEYS=f"alice:{KEY_A},bob:{KEY_B}")
    return url.replace("ws://", "http://").rstrip("/")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def submit_from_page(page: Page, url: str) -> str:
    """Type a URL into the submit box; return the job id the page then shows."""
    before = page.get_by_test_id("detail-id").text_content() or ""
    page.get_by_test_id("submit-url").fill(url)
    page.get_by_test_id("submit-button").click()
    page.wait_for_function(
        "before => { const t = document.getElementById('detail-id').textContent;"
        " return t !== before && /^[A-Za-z0-9_-]{22,64}$/.test(t); }", arg=before, timeout=WAIT_MS)
    return page.get_by_test_id("detail-id").text_content() or ""


def row(page: Page, job_id: str) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


def attempt(page: Page, n: int) -> Any:
    return page.locator(f'[data-testid="attempt-bar"][data-attempt="{n}"]')


def test_submit_watch_inspect_and_filter(live: str, pages: str, page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with httpx.Client(base_url=live, timeout=30) as api:  # some company for the chart and table
        r = api.post("/v1/jobs", json={"jobs": [{"url": f"{pages}/page/{i}"} for i in range(8)]})
        assert r.status_code == 202
    page.goto(f"{live}/ui")
    expect(page).to_have_title("Scrapeledger dashboard")
    expect(page.get_by_test_id("live")).to_have_text("live")

    # a job submitted from the page appears at once and moves to succeeded
    ok = submit_from_page(page, f"{pages}/page/42")
    expect(row(page, ok)).to_be_visible()
    expect(row(page, ok).get_by_test_id("job-status")).to_have_text("succeeded")
    expect(row(page, ok)).to_contain_text("127.0.0.1")
    # its timeline: one attempt bar, ended well, with its duration
    expect(page.get_by_test_id("detail-status")).to_have_text("succeeded")
    bars = page.get_by_test_id("attempt-bar")
    expect(bars).to_have_count(1)
    expect(bars.first).to_have_attribute("data-outcome", "ok")
    expect(page.get_by_test_id("attempt-label").first).to_have_text(re.compile(r"^\d+(\.\d+)? m?s"))
    expect(page.get_by_test_id("events")).to_contain_text("ScrapeSucceeded")
    # its result, rendered in the sandboxed frame
    page.get_by_test_id("show-rendered").click()
    frame = page.frame_locator('[data-testid="rendered"]')
    expect(frame.locator("h1")).to_have_text("page 42")
    assert page.get_by_test_id("rendered").get_attribute("sandbox") == ""

    # other output formats, shown as text
    page.get_by_test_id("format-html").uncheck()
    page.get_by_test_id("format-markdown").check()
    submit_from_page(page, f"{pages}/page/43")
    expect(page.get_by_test_id("source")).to_contain_text("page 43")
    expect(page.get_by_test_id("show-rendered")).to_be_hidden()
    page.get_by_test_id("format-markdown").uncheck()
    page.get_by_test_id("format-html").check()

    # a failed job shows its error code, in the table and on its own
    bad = submit_from_page(page, f"{pages}/status/404")
    expect(row(page, bad).get_by_test_id("job-status")).to_have_text("failed")
    expect(row(page, bad).get_by_test_id("job-error")).to_have_text("http_404")
    expect(page.get_by_test_id("detail-error")).to_contain_text("http_404")

    # a job that fails once and succeeds on its retry: two attempt bars and the back-off between
    flaky = submit_from_page(page, f"{pages}/flaky/{uuid.uuid4().hex}?fail=1")
    expect(row(page, flaky).get_by_test_id("job-status")).to_have_text("succeeded")
    expect(bars).to_have_count(2)
    expect(attempt(page, 1)).to_have_attribute("data-outcome", "failed")
    expect(attempt(page, 2)).to_have_attribute("data-outcome", "ok")
    expect(page.get_by_test_id("backoff-bar")).to_have_count(1)
    expect(page.get_by_test_id("attempt-label").first).to_contain_text("http_503")

    # filter by status: only failed rows, then only succeeded ones
    status = page.get_by_test_id("filter-status")
    status.select_option("failed")
    expect(row(page, ok)).to_have_count(0)
    expect(row(page, bad)).to_be_visible()
    expect(page.get_by_test_id("job-status")).to_have_text(["failed"])
    status.select_option("succeeded")
    expect(row(page, bad)).to_have_count(0)
    expect(row(page, ok)).to_be_visible()
    expect(page.get_by_test_id("job-row")).to_have_count(11)  # 8 + ok + markdown + flaky
    # search by an id prefix
    status.select_option("")
    page.get_by_test_id("filter-q").fill(bad[:8])
    expect(page.get_by_test_id("job-row")).to_have_count(1)
    expect(row(page, bad)).to_be_visible()
    page.get_by_test_id("filter-q").fill("")
    expect(page.get_by_test_id("job-row")).to_have_count(12)
    # counters: everything finished, none in flight
    expect(page.get_by_test_id("in-flight")).to_have_text("0")
    expect(page.get_by_test_id("finished-by-status")).to_have_text("succeeded 11 · failed 1")
    expect(page.locator("#chart rect.bar").first).to_be_visible()

    row(page, flaky).click()
    expect(page.get_by_test_id("backoff-bar")).to_have_count(1)
    shot = page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if SCREENSHOT:
        Path(SCREENSHOT).write_bytes(shot)

    # a running job's timeline grows live: its attempt bar runs until the page server lets go
    gate = uuid.uuid4().hex
    running = submit_from_page(page, f"{pages}/gate/{gate}")
    expect(attempt(page, 1)).to_have_attribute("data-outcome", "running")
    expect(page.get_by_test_id("in-flight")).to_have_text("1")
    httpx.get(f"{pages}/release/{gate}", timeout=10).raise_for_status()
    expect(attempt(page, 1)).to_have_attribute("data-outcome", "ok")
    expect(row(page, running).get_by_test_id("job-status")).to_have_text("succeeded")
    # one cancelled from the page ends cancelled
    hold = uuid.uuid4().hex
    cancelled = submit_from_page(page, f"{pages}/gate/{hold}")
    expect(attempt(page, 1)).to_have_attribute("data-outcome", "running")
    page.get_by_test_id("cancel-job").click()
    expect(page.get_by_test_id("detail-status")).to_have_text("cancelled")
    expect(row(page, cancelled).get_by_test_id("job-status")).to_have_text("cancelled")
    httpx.get(f"{pages}/release/{hold}", timeout=10).raise_for_status()


def beacon_hits(pages: str, key: str) -> int:
    stats = httpx.get(f"{pages}/stats", timeout=10).json()
    return int(stats["hits"].get(f"/beacon/{key}", 0))


def test_scraped_scripts_never_run_in_the_dashboard(live: str, pages: str, page: Page) -> None:
    from playwright.sync_api import expect

    key = uuid.uuid4().hex[:12]
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    response = page.goto(f"{live}/ui/")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp

    job = submit_from_page(page, f"{pages}/script/{key}")
    expect(row(page, job).get_by_test_id("job-status")).to_have_text("succeeded")
    page.get_by_test_id("show-source").click()
    expect(page.get_by_test_id("source")).to_contain_text(f"<script>console.log('xss-ran {key}')")
    page.get_by_test_id("show-rendered").click()
    frame = page.frame_locator('[data-testid="rendered"]')
    expect(frame.locator("h1")).to_have_text(f"script page {key}")  # the page is shown...

    # ...and none of its scripts ran, in the page or in the frame
    assert page.title() == "Scrapeledger dashboard"
    assert page.evaluate("() => [window.__xss, window.__xss2, document.cookie]") == [None, None, ""]
    assert page.evaluate("() => document.querySelectorAll('script').length") == 1  # app.js
    assert page.evaluate("() => document.body.innerHTML.includes('<script>console.log')") is False
    assert not [m for m in console if "xss-ran" in m]
    assert beacon_hits(pages, key) == 0

    # the same page opened on its own does run them: the traces above would have shown
    control = page.context.new_page()
    control.on("console", lambda msg: console.append(msg.text))
    control.goto(f"{pages}/script/{key}")
    expect(control).to_have_title(f"pwned {key}")
    eventually(lambda: beacon_hits(pages, key) >= 1, timeout=30, what="the control page's beacon",
               interval=0.1)
    assert [m for m in console if m == f"xss-ran {key}"]


def test_with_api_keys_the_page_asks_for_one_and_shows_that_keys_jobs(
    keyed: str, live: str, pages: str, page: Page,
) -> None:
    from playwright.sync_api import expect

    # company the page must not show: bob's job, and one submitted with keys off
    bobs = httpx.post(f"{keyed}/v1/jobs", json={"url": f"{pages}/page/90"}, timeout=30,
                      headers={"Authorization": f"Bearer {KEY_B}"}).json()["job_id"]
    keyless = httpx.post(f"{live}/v1/jobs", json={"url": f"{pages}/page/91"}, timeout=30).json()["job_id"]
    page.goto(f"{keyed}/ui/")
    dialog = page.get_by_test_id("key-dialog")
    expect(dialog).to_be_visible()  # the edge answered 401: the page asks
    page.locator("#key-input").fill(KEY_A)
    page.locator("#key-form button[type=submit]").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("live")).to_have_text("live")
    mine = submit_from_page(page, f"{pages}/page/92")
    expect(row(page, mine).get_by_test_id("job-status")).to_have_text("succeeded")
    expect(page.get_by_test_id("job-row")).to_have_count(1)  # alice's one job, nobody else's
    expect(row(page, bobs)).to_have_count(0)
    expect(row(page, keyless)).to_have_count(0)
    expect(page.get_by_test_id("finished-by-status")).to_have_text("succeeded 1")
    # the key was never put in a URL the page asked for
    assert KEY_A not in page.evaluate("() => performance.getEntries().map(e => e.name).join(' ')")
