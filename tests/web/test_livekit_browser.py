"""livekit-call.js in headless Chromium against the token router, with a LiveKit URL on a
loopback port nobody listens on: the caller hears why the call failed, in words, and no
request leaves this machine (the bundle is served by the app, never a CDN)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from playwright.sync_api import Page, sync_playwright

from tests.web.conftest import LIBRARY, free_port, served
from tests.web.test_call_browser import launch
from web.app import STATIC
from web.livekit_token import LiveKitSettings, livekit_router

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
ERROR_TIMEOUT_MS = 20000

# the smallest page that uses the transport as call.js does
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title>
<link rel="icon" href="data:,"></head><body><video id="avatar" autoplay playsinline></video>
<script src="/static/vendor/livekit-client.umd.js"></script>
<script src="/static/livekit-call.js"></script>
<script>
window.states = []; window.errors = [];
window.call = (who) => { window.current = window.startLiveKitCall(who, {
  video: document.getElementById("avatar"),
  onState: (update) => window.states.push(update.state),
  onError: (err) => window.errors.push(err.message),
}); };
</script></body></html>"""


@pytest.fixture(scope="module")
def dead_url() -> str:
    return f"ws://127.0.0.1:{free_port()}"  # closed again: connections are refused


@pytest.fixture(scope="module")
def page_url(dead_url):
    settings = LiveKitSettings(
        url=dead_url, api_key="APItest", api_secret="secret-for-tests-only-0123456789abcdef"
    )
    app = FastAPI()
    app.include_router(livekit_router(settings, library=LIBRARY))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.get("/test", response_class=HTMLResponse)(lambda: PAGE)
    with served(app) as base_url:
        yield f"{base_url}/test"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = launch(p, "--use-fake-ui-for-media-stream")  # the microphone allowed
        yield browser
        browser.close()


class Traffic:
    """Every request and websocket a page opens; any not to loopback is aborted."""

    def __init__(self, page: Page) -> None:
        self.requests: list[str] = []
        self.sockets: list[str] = []
        page.route("**/*", self._route)
        page.on("websocket", lambda ws: self.sockets.append(ws.url))

    def _route(self, route) -> None:
        self.requests.append(route.request.url)
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            route.abort()

    def outside(self) -> list[str]:
        urls = self.requests + self.sockets
        return [url for url in urls if urlsplit(url).hostname not in LOOPBACK]


def call_and_wait_for_error(browser, page_url: str, who: dict) -> tuple[dict, Traffic]:
    page = browser.new_page()
    try:
        traffic = Traffic(page)
        page.goto(page_url)
        page.evaluate("(who) => window.call(who)", who)
        page.wait_for_function("window.errors.length > 0", timeout=ERROR_TIMEOUT_MS)
        page.wait_for_timeout(300)  # anything reported after the error would show now
        seen = page.evaluate("({states: window.states, errors: window.errors})")
    finally:
        page.close()
    return seen, traffic


def test_an_unreachable_livekit_server_is_a_clear_error_and_nothing_leaves_loopback(
    browser, page_url, dead_url
):
    seen, traffic = call_and_wait_for_error(browser, page_url, {"character": "ada"})
    print(f"\n{seen}; to: {sorted({urlsplit(u).netloc for u in traffic.requests})}")
    (error,) = seen["errors"]  # reported once
    assert error.startswith(f"Could not connect to the call server at {dead_url}: check that")
    assert seen["states"] == ["connecting"]  # never "waiting" nor live
    assert any(url.endswith("/static/vendor/livekit-client.umd.js") for url in traffic.requests)
    assert any(url.endswith("/api/livekit/token") for url in traffic.requests)
    assert any(url.startswith(dead_url) for url in traffic.sockets)  # it did try the server
    assert traffic.outside() == []


def test_an_unknown_character_is_refused_before_any_connection(browser, page_url):
    seen, traffic = call_and_wait_for_error(browser, page_url, {"character": "nobody"})
    (error,) = seen["errors"]
    assert error.startswith("The call could not start: no character 'nobody'; known characters:")
    assert seen["states"] == ["connecting"]
    assert traffic.sockets == []


def test_hanging_up_while_connecting_ends_the_call_without_an_error(browser, page_url):
    page = browser.new_page()
    try:
        traffic = Traffic(page)
        page.goto(page_url)
        page.evaluate("window.call({character: 'ada'}); window.current.hangup()")
        page.wait_for_timeout(1500)  # long enough for the refused connection to show (above)
        seen = page.evaluate("({states: window.states, errors: window.errors})")
    finally:
        page.close()
    assert seen == {"states": ["connecting", "ended"], "errors": []}
    assert traffic.sockets == []  # it stopped before asking for a token
