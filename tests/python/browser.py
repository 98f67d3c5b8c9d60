"""A real browser for the tests of payground's pages: Debian's Chromium driven by
Playwright (never a browser of Playwright's own; ./scripts/test installs the
package). One Chromium for the whole session; each test gets a fresh context (no
cache, no cookies), every wait is bounded, and a failing test leaves a screenshot
and the page's console under tests/python/artifacts/.

Load it with `pytest_plugins = ["browser"]` in the test module."""
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# Flags that work on a headless build machine without a GPU, a sandbox or the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The longest any single browser step may wait (milliseconds).
STEP_TIMEOUT_MS = 10_000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item, so the page fixture knows the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def chromium():
    """The session's one Chromium. Playwright gives it a fresh profile directory of its own."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: ./scripts/test installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000,
        )
        try:
            yield browser
        finally:
            browser.close()


class Console:
    """What the page said: console messages, uncaught errors, failed requests."""

    def __init__(self):
        self.lines = []

    def errors(self):
        return [line for line in self.lines if line.startswith(("error", "pageerror", "requestfailed"))]

    def watch(self, page):
        page.on("console", lambda m: self.lines.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.lines.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: self.lines.append(f"requestfailed: {r.method} {r.url} {r.failure}"))


@pytest.fixture
def page(chromium, request):
    """A page in a fresh browser context. On failure: artifacts/<test>.png and .log."""
    context = chromium.new_context(viewport={"width": 560, "height": 720})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    page.console_log = Console()
    page.console_log.watch(page)
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            try:
                page.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=True, timeout=5_000)
            except Exception as e:  # the screenshot is a courtesy; the failure is the test's
                page.console_log.lines.append(f"screenshot failed: {e}")
            (ARTIFACTS / f"{stem}.log").write_text(
                f"url: {page.url}\n" + "\n".join(page.console_log.lines) + "\n", encoding="utf-8")
        context.close()


class Shop:
    """A merchant's site on another local origin: the return URL of the 3-D Secure
    flow, and a blank page to make cross-origin calls from."""

    def __init__(self):
        self.visits = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlparse(self.path)
                shop.visits.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
                if url.path == "/favicon.ico":
                    self.send_response(204)
                    self.end_headers()
                    return
                body = (b'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                        b'<title>Shop</title></head><body><h1 id="shop">Back at the shop</h1></body></html>')
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path):
        return self.origin + path

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def shop():
    s = Shop()
    yield s
    s.stop()


@pytest.fixture
def artifacts():
    """The folder for what a test leaves to look at (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
