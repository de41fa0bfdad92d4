"""livekit-call.js in headless Chromium against the token router. With a LiveKit URL on a
loopback port nobody listens on: the caller hears why the call failed, in words, and no
request leaves this machine (the bundle is served by the app, never a CDN). With a stand-in
Room (no LiveKit server can run here): the states a call goes through as the worker's
character joins, speaks and leaves."""

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
<!-- stand-in -->
<script src="/static/microphone.js"></script>
<script src="/static/livekit-call.js"></script>
<script>
window.states = []; window.errors = []; window.speakers = []; window.lines = [];
window.call = (who, more) => { window.current = window.startLiveKitCall(who, {
  video: document.getElementById("avatar"),
  onState: (update) => {
    window.states.push(update.state);
    if (update.state === "speaking") window.speakers.push(update.character ?? null);
  },
  onTranscript: (line) => window.lines.push(line),
  onError: (err) => window.errors.push(err.message),
  ...more,
}); };
</script></body></html>"""

# The real livekit-client, but a Room whose server side the test plays: the worker's character
# publishing its tracks, changing its livekit-agents state, leaving.
STAND_IN_ROOM = """<script>
(() => {
  const LK = window.LivekitClient;
  const E = LK.RoomEvent;
  class StandInRoom {
    constructor() {
      this.handlers = {};
      this.textHandlers = {};
      this.published = [];
      this.localParticipant = {
        identity: "caller-1",
        publishTrack: async (track) => this.published.push(track.kind),
      };
      window.room = this;
    }
    on(event, fn) { (this.handlers[event] ||= []).push(fn); return this; }
    registerTextStreamHandler(topic, fn) { this.textHandlers[topic] = fn; }
    emit(event, ...args) { (this.handlers[event] || []).forEach((fn) => fn(...args)); }
    async connect(url, token) { this.url = url; this.token = token; }
    async disconnect() {
      this.disconnected = true;
      this.emit(E.Disconnected, LK.DisconnectReason.CLIENT_INITIATED);
    }
  }
  window.mic = { kind: "audio", stopped: false, stop() { this.stopped = true; } };
  window.LivekitClient = { ...LK, Room: StandInRoom, createLocalAudioTrack: async () => mic };
  window.character = { identity: "agent-1", attributes: {} };
  window.tracks = {};
  window.publish = (name) => {
    const track = { attachedTo: null, attach(el) { this.attachedTo = el.id; },
                    detach() { this.attachedTo = null; } };
    tracks[name] = track;
    room.emit(E.TrackSubscribed, track, { trackName: name }, character);
  };
  window.setAttributes = (changed) => {
    character.attributes = { ...character.attributes, ...changed };
    room.emit(E.ParticipantAttributesChanged, changed, character);
  };
  window.agentState = (state) => setAttributes({ "lk.agent.state": state });
  // a text stream on `topic` from `identity`, its pieces arriving in turn
  window.textStream = async (topic, identity, attributes, pieces) => {
    async function* reader() { for (const piece of pieces) yield piece; }
    const stream = Object.assign(reader(), { info: { id: "TS_" + Math.random(), attributes } });
    await room.textHandlers[topic](stream, { identity });
  };
  window.leave = () => room.emit(E.ParticipantDisconnected, character);
  window.serverEnds = () => room.emit(E.Disconnected, LK.DisconnectReason.ROOM_DELETED);
})();
</script>"""


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
    stand_in = PAGE.replace("<!-- stand-in -->", STAND_IN_ROOM)
    app.get("/test-room", response_class=HTMLResponse)(lambda: stand_in)
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


SEEN = "({states: window.states, errors: window.errors})"


@pytest.fixture
def room_page(browser, page_url):
    page = browser.new_page()
    page.goto(page_url.replace("/test", "/test-room"))
    yield page
    page.close()


def in_the_room(page: Page, **more) -> None:
    page.evaluate("(more) => window.call({character: 'ada'}, more)", more)
    page.wait_for_function("window.states.includes('waiting')", timeout=ERROR_TIMEOUT_MS)


def test_a_call_waits_for_the_character_then_follows_its_state(room_page, dead_url):
    page = room_page
    in_the_room(page)
    room = page.evaluate("({url: room.url, token: room.token, published: room.published})")
    assert room["url"] == dead_url and room["token"].count(".") == 2  # the server's grant
    assert room["published"] == ["audio"]  # the microphone
    page.evaluate("publish('avatar_audio'); publish('someone_elses'); publish('avatar_video')")
    for state in ("speaking", "thinking", "listening"):
        page.evaluate("(s) => agentState(s)", state)
    attached = page.evaluate(
        "Object.fromEntries(Object.entries(tracks).map(([n, t]) => [n, t.attachedTo]))"
    )
    assert attached == {"avatar_audio": "avatar", "someone_elses": None, "avatar_video": "avatar"}
    assert page.evaluate(SEEN) == {
        "states": ["connecting", "waiting", "listening", "speaking", "listening"],  # changes
        "errors": [],
    }
    assert page.evaluate("window.speakers") == [None]  # no avatar.speaker: no name
    page.evaluate("window.current.hangup()")
    seen = page.evaluate(SEEN)
    assert seen["states"][-1] == "ended" and seen["errors"] == []  # our own disconnect: no error
    assert page.evaluate("[room.disconnected, mic.stopped, tracks.avatar_video.attachedTo]") == [
        True,
        True,
        None,
    ]


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ("leave()", "The character left the call."),
        ("serverEnds()", "The call was disconnected (ROOM_DELETED)."),
    ],
)
def test_a_call_the_character_or_server_ends_is_an_error_once(room_page, event, error):
    in_the_room(room_page)
    room_page.evaluate("publish('avatar_video')")
    room_page.evaluate(event)
    room_page.evaluate(event)  # twice: reported once
    seen = room_page.evaluate(SEEN)
    assert seen == {"states": ["connecting", "waiting", "listening"], "errors": [error]}
    assert room_page.evaluate("[room.disconnected, mic.stopped]") == [True, True]


def test_a_character_that_never_comes_is_an_error(room_page):
    in_the_room(room_page, agentTimeoutMs=200)
    room_page.wait_for_function("window.errors.length > 0", timeout=ERROR_TIMEOUT_MS)
    (error,) = room_page.evaluate("window.errors")
    assert error.startswith("The character did not join the call: no avatar worker took it.")
    assert room_page.evaluate("room.disconnected")


# Ada greets, the caller says "hello Bo" (transcribed in two versions), Bo takes the floor.
STREAMS = """async () => {
  const final = (segment, yes) => ({"lk.segment_id": segment, "lk.transcription_final": yes});
  setAttributes({"avatar.speaker": "Ada"});
  publish("avatar_video");
  agentState("speaking");
  await textStream("lk.transcription", "agent-1", final("SG_1", "false"), ["Hi, ", "I'm Ada."]);
  agentState("listening");
  await textStream("lk.transcription", "caller-1", final("SG_2", "false"), ["hello"]);
  await textStream("lk.transcription", "caller-1", final("SG_2", "true"), ["hello Bo"]);
  setAttributes({"avatar.speaker": "Bo"});
  agentState("speaking");
  await textStream("lk.transcription", "agent-1", final("SG_3", "false"), ["Hey!"]);
}"""


def test_a_scene_call_names_the_speaker_and_follows_the_transcript_streams(room_page):
    """The worker names who has the floor (avatar.speaker); livekit-agents publishes the
    transcript on lk.transcription: the caller's segment as versions (the last final), the
    character's as one stream whose pieces come as the reply plays."""
    page = room_page
    page.evaluate("(more) => window.call({scene: 'duo'}, more)", {})
    page.wait_for_function("window.states.includes('waiting')", timeout=ERROR_TIMEOUT_MS)
    page.evaluate(STREAMS)
    seen = page.evaluate(
        "({speakers: window.speakers, lines: window.lines, errors: window.errors})"
    )
    assert seen["speakers"] == ["Ada", "Bo"] and seen["errors"] == []
    latest = {}
    for line in seen["lines"]:
        latest[line["id"]] = line  # as transcript.js keeps them: the last version of each
    assert list(latest.values()) == [
        {
            "id": "SG_1",
            "role": "character",
            "text": "Hi, I'm Ada.",
            "character": "Ada",
            "final": True,
        },
        {"id": "SG_2", "role": "user", "text": "hello Bo", "character": None, "final": True},
        {"id": "SG_3", "role": "character", "text": "Hey!", "character": "Bo", "final": True},
    ]
    growing = [line["text"] for line in seen["lines"] if line["id"] == "SG_1"]
    assert growing[:2] == ["Hi, ", "Hi, I'm Ada."]  # it grew as its pieces came
