"""End to end in a real browser: headless Chromium opens the call page with a fake microphone
that says one sentence; the character (offline voice) greets, hears it and answers with its
first scripted line. The remote video plays with advancing frames, the remote audio track is
live and receiving, and the page's state goes speaking, then listening. A screenshot is kept
in test-artifacts/call.png."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import wave
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from llm_bridge.offline.tts import SAMPLE_RATE as ESPEAK_RATE
from tests.llm_bridge.conftest import espeak
from tests.web.conftest import LIBRARY, call, calls_of, free_port, served, wait_until
from web.app import create_app
from web.livekit_token import LiveKitSettings

CHROMIUM = os.environ.get("AVATAR_TEST_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LEAD_S, TAIL_S = 5.0, 3.0  # silence around the words: the greeting plays out first
TURN_S = 30.0  # generous bounds on a loaded 2-core machine

# Counts each state the page shows, in order, from the moment the page loads.
RECORD_STATES = """
window.__states = [];
new MutationObserver(() => {
  const s = document.body.dataset.state;
  if (window.__states[window.__states.length - 1] !== s) window.__states.push(s);
}).observe(document, {subtree: true, attributes: true,
                   attributeFilter: ["data-state"]});
"""

COUNT_VIDEO_FRAMES = """
async (ms) => {
  const video = document.getElementById("avatar");
  let frames = 0;
  const tick = () => { frames++; video.requestVideoFrameCallback(tick); };
  video.requestVideoFrameCallback(tick);
  await new Promise((r) => setTimeout(r, ms));
  return {frames, width: video.videoWidth, time: video.currentTime};
}
"""

AUDIO_RECEIVED = """
async () => {
  const pc = window.avatarCall.pc;
  const stats = [...(await pc.getStats()).values()];
  const inbound = stats.find((s) => s.type === "inbound-rtp" && s.kind === "audio");
  const track = document.getElementById("avatar").srcObject.getAudioTracks()[0];
  return {state: track.readyState, muted: track.muted, samples: inbound.totalSamplesReceived,
          packets: inbound.packetsReceived};
}
"""


def microphone_wav(path: Path) -> float:
    """The user's sentence with silence around it, as Chromium's fake microphone plays it;
    returns when the words end, in seconds from the start."""
    words = espeak("Hello Ada, how are you today?")
    lead, tail = (np.zeros(round(s * ESPEAK_RATE), dtype=np.int16) for s in (LEAD_S, TAIL_S))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(ESPEAK_RATE)
        out.writeframes(np.concatenate([lead, words, tail]).tobytes())
    return LEAD_S + len(words) / ESPEAK_RATE


def wait_for_state(page: Page, states: list[str], timeout: float = TURN_S) -> None:
    page.wait_for_function(
        "(want) => want.includes(document.body.dataset.state)", arg=states, timeout=timeout * 1e3
    )


def refusal(page: Page, url: str, *, timeout: float = 10) -> str:
    """Open the call page at url, start the call, and return the error the page shows."""
    page.goto(url)
    page.get_by_role("button", name="Start call").click()
    wait_for_state(page, ["error"], timeout=timeout)
    return page.locator("#error").inner_text()


def launch(p: Playwright, *args: str) -> Browser:
    """Debian's Chromium with a fake microphone device; fails (never skips) without it."""
    assert Path(CHROMIUM).is_file(), (
        f"Chromium is needed at {CHROMIUM} (Debian: apt-get install chromium; or set "
        "AVATAR_TEST_CHROMIUM)"
    )
    fixed = ["--use-fake-device-for-media-stream", "--no-sandbox"]  # tests may run as root
    return p.chromium.launch(executable_path=CHROMIUM, args=[*fixed, *args])


def test_a_browser_calls_a_character_and_hears_it_answer(web_app, micro_engine, tmp_path):
    ada = LIBRARY.character("ada").persona
    wav = tmp_path / "microphone.wav"
    microphone_wav(wav)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "call.png"
    args = [
        "--use-fake-ui-for-media-stream",  # the microphone allowed
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with served(web_app) as base_url, sync_playwright() as p:
        browser = launch(p, *args)
        try:
            page = browser.new_page(viewport={"width": 720, "height": 860})
            page.add_init_script(RECORD_STATES)
            page.goto(f"{base_url}/call?character=ada")
            page.get_by_role("button", name="Start call").click()

            wait_for_state(page, ["speaking"])  # the greeting
            assert page.locator("#status").inner_text() == f"Speaking: {ada.name}"
            video = page.evaluate(COUNT_VIDEO_FRAMES, 1000)
            audio = page.evaluate(AUDIO_RECEIVED)
            page.screenshot(path=str(screenshot))
            print(f"\nscreenshot: {screenshot}")

            (call,) = calls_of(web_app).open_calls
            history = call.conversation.session.history

            def replied() -> bool:
                said = [m.text_content for m in history.messages() if m.role == "assistant"]
                return ada.lines[0] in said

            wait_until(replied, timeout=TURN_S)  # it heard the user and answered
            wait_for_state(page, ["speaking"])
            wait_for_state(page, ["listening"])
            later = page.evaluate(AUDIO_RECEIVED)
            states = page.evaluate("window.__states")
            page.get_by_role("button", name="Hang up").click()
            wait_until(lambda: not calls_of(web_app).open_calls, timeout=10)
            ended = page.locator("#status").inner_text()
        finally:
            browser.close()

    print(f"video: {video}; audio: {audio} -> {later}; states: {states}")
    fps = micro_engine.fps
    assert video["frames"] >= fps // 2, video  # about fps frames shown in that second
    assert video["width"] == 64 and video["time"] > 0  # the micro engine's picture, playing
    assert audio["state"] == "live" and not audio["muted"]
    assert later["packets"] > audio["packets"] and later["samples"] > audio["samples"]
    # greeting, then the reply to the user, each followed by listening
    assert states[:2] == ["idle", "connecting"]
    spoken = [s for s in states if s in ("speaking", "listening")]
    assert spoken.count("speaking") >= 2 and spoken[-1] == "listening"
    assert ended == "Call ended"
    assert screenshot.stat().st_size > 10_000


def test_the_page_says_why_a_call_cannot_start(web_app):
    """An unknown character, a busy server, a denied microphone: each in words on the page."""
    # The Python caller runs on a loop of its own in a thread while Playwright runs its own,
    # so its call connects and stays up (a caller gone quiet would be ended).
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-caller", daemon=True)
    thread.start()

    def on_caller_loop(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    async def connected(base_url: str):
        client = await call(base_url, source="127.0.0.2", character="bo")  # another address
        await client.frames(2)
        return client

    with served(web_app) as base_url:
        running = on_caller_loop(connected(base_url))  # the one slot
        with sync_playwright() as p:
            allowed = launch(p, "--use-fake-ui-for-media-stream")
            denied = launch(p)  # no fake prompt: the microphone request is refused
            try:
                page = allowed.new_page()
                page.goto(f"{base_url}/call?character=nobody")
                wait_for_state(page, ["error"], timeout=10)
                unknown = [page.locator(q).inner_text() for q in ("#status", "#error")]
                start_disabled = page.get_by_role("button", name="Start call").is_disabled()

                busy = refusal(page, f"{base_url}/call?character=ada")
                mic = refusal(denied.new_page(), f"{base_url}/call?character=ada")
            finally:
                allowed.close()
                denied.close()
        on_caller_loop(running.close())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()
    assert unknown[0] == "Unknown character" and "no character 'nobody'" in unknown[1]
    assert start_disabled
    assert busy.startswith("Busy: all 1 call slot(s) are in use")
    assert mic.startswith("Microphone access was denied.")


def test_with_livekit_the_page_calls_through_it_and_says_why_it_failed(micro_engine):
    """The page loads the vendored livekit-client and livekit-call.js from this server and
    calls through them; with nobody listening at LIVEKIT_URL, the failure is in words."""
    nobody = f"ws://127.0.0.1:{free_port()}"
    settings = LiveKitSettings(url=nobody, api_key="key", api_secret="secret" * 6)
    app = create_app(engine_factory=lambda: micro_engine, library=LIBRARY, livekit=settings)
    with served(app) as base_url, sync_playwright() as p:
        browser = launch(p, "--use-fake-ui-for-media-stream")
        try:
            page = browser.new_page()
            loaded = []
            page.on("request", lambda r: loaded.append(r.url))
            error = refusal(page, f"{base_url}/call?character=ada", timeout=30)
        finally:
            browser.close()
    assert f"{base_url}/static/vendor/livekit-client.umd.js" in loaded
    assert f"{base_url}/static/livekit-call.js" in loaded
    assert f"{base_url}/api/livekit/token" in loaded
    livekit = urlsplit(settings.url).port
    elsewhere = [u for u in loaded if not u.startswith(base_url) and urlsplit(u).port != livekit]
    assert elsewhere == []  # nothing but this server and the LiveKit server
    assert calls_of(app).open_calls == []  # the local transport was not used
    assert error and settings.url.removeprefix("ws://") in error, error
