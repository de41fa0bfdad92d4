"""The front door in headless Chromium: the gallery lists the library with its pictures and
follows its changes; Call starts the call on the call page, which shows the character's face
before the video plays, then the transcript fills with both sides of a turn (the offline
voice: the fake microphone's sentence as heard, the character's reply as played) and the
latency readout measures the reply; mute and hang-up work from the keyboard; a scene call
names whoever speaks; at a phone's width (375 px) nothing scrolls sideways and every control
shows. One server (with the console, for its links) and one browser for the module; the
screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from app.store import Store
from tests.web.conftest import calls_of, served, wait_until
from tests.web.test_call_browser import (
    ARTIFACTS,
    RECORD_STATES,
    TURN_S,
    launch,
    microphone_wav,
    wait_for_state,
)
from web.app import create_app
from web.console import build_console

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1100, "height": 760}

# The transcript as the page shows it: one entry per line, in order.
TRANSCRIPT = """() => [...document.querySelectorAll("#transcript li")].map((li) => ({
  who: li.querySelector(".who").textContent,
  said: li.querySelector(".said").textContent,
  final: li.classList.contains("final"),
  cut: li.querySelector(".cut s")?.textContent ?? "",
}))"""

# Each visible control's box, and how wide the page is against its viewport.
LAYOUT = """() => ({
  scrollWidth: document.documentElement.scrollWidth,
  viewport: window.innerWidth,
  controls: [...document.querySelectorAll("button, a, input")]
    .filter((el) => el.offsetParent !== null)
    .map((el) => { const r = el.getBoundingClientRect();
                   return {name: el.textContent.trim() || el.id, left: r.left, right: r.right,
                           top: r.top, width: r.width, height: r.height}; }),
})"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store(tmp_path_factory.mktemp("front") / "data")  # seeded with the defaults


@pytest.fixture(scope="module")
def front(micro_engine, store):
    """The app as `avatar serve` builds it (the console mounted), one call at a time."""
    console = build_console(store, render_engine=None)
    app = create_app(
        engine_factory=lambda: micro_engine, library=store.library, sessions=1, console=console
    )
    with served(app) as base_url:
        yield app, base_url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    wav = tmp_path_factory.mktemp("microphone") / "microphone.wav"
    microphone_wav(wav)  # each page's microphone says one sentence, once
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch(
            p,
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required",
        )
        yield browser
        browser.close()


def new_page(browser: Browser, viewport: dict) -> Page:
    page = browser.new_page(viewport=viewport)
    page.add_init_script(RECORD_STATES)
    return page


def ready(page: Page) -> None:
    """Until the call page knows whom it calls."""
    page.wait_for_function("document.getElementById('status').textContent === 'Ready'")


def cards(page: Page) -> list[dict]:
    return page.evaluate(
        """() => [...document.querySelectorAll(".card")].map((card) => ({
          name: card.querySelector("h3")?.textContent ?? card.textContent.trim(),
          members: card.querySelector(".members")?.textContent ?? null,
          picture: card.querySelector("img")?.naturalWidth ?? 0,
          call: card.querySelector(".actions .button")?.getAttribute("href") ?? null,
          edit: card.querySelector(".edit")?.getAttribute("href") ?? null,
          link: card.classList.contains("new") ? card.querySelector("a").getAttribute("href")
                                                : null,
        }))"""
    )


def pictures_loaded(page: Page) -> None:
    page.wait_for_function(
        "[...document.images].length > 0 && [...document.images].every((i) => i.complete)"
    )


def transcript_has(page: Page, count: int) -> None:
    """Until `count` lines of the transcript are final."""
    page.wait_for_function(
        f"({TRANSCRIPT})().filter((l) => l.final).length >= {count}", timeout=TURN_S * 1e3
    )


def hang_up_and_wait(page: Page, app) -> None:
    page.get_by_role("button", name="Hang up").click()
    wait_until(lambda: not calls_of(app).open_calls, timeout=10)


def test_the_gallery_lists_the_library_with_pictures_and_follows_its_changes(front, browser, store):
    _, base_url = front
    page = new_page(browser, DESKTOP)
    try:
        page.goto(f"{base_url}/")
        page.wait_for_selector(".card")
        pictures_loaded(page)
        page.screenshot(path=str(ARTIFACTS / "gallery.png"), full_page=True)
        listed = cards(page)
        # the console deletes a character; the gallery shows it when the page is looked at again
        nova = store.character("astronaut")
        store.delete_character("astronaut", revision=nova.revision)
        page.evaluate("window.dispatchEvent(new Event('focus'))")
        page.wait_for_function("document.querySelectorAll('.card').length === 4")
        after = [card["name"] for card in cards(page)]
        status = page.locator("#status").inner_text()
        # Edit opens the console on that character's form
        page.get_by_role("link", name="Edit Bo").click()
        expect(page.get_by_label("Name", exact=True).first).to_have_value("Bo", timeout=20_000)
        expect(page.get_by_label("Character", exact=True)).to_have_value("Bo (bo)")
    finally:
        page.close()
    assert [(c["name"], c["call"], c["edit"]) for c in listed] == [
        ("Ada", "/call?character=ada&start=1", "/console/?character=ada"),
        ("Nova", "/call?character=astronaut&start=1", "/console/?character=astronaut"),
        ("Bo", "/call?character=bo&start=1", "/console/?character=bo"),
        ("+New character", None, None),
        ("Ada and Bo", "/call?scene=duo&start=1", "/console/?scene=duo"),
    ]
    assert listed[3]["link"] == "/console/"
    assert listed[4]["members"] == "Ada & Bo"
    portraits = [c["picture"] for c in listed if c["link"] is None]
    assert portraits == [512] * 4  # every portrait and the scene's picture loaded
    assert after == ["Ada", "Bo", "+New character", "Ada and Bo"]
    assert status == "Pick someone to video-call."


def test_a_call_from_the_gallery_fills_the_transcript_with_both_sides_of_a_turn(front, browser):
    app, base_url = front
    page = new_page(browser, DESKTOP)
    try:
        # before the call: the character's face and name in the video box
        page.goto(f"{base_url}/call?character=ada")
        ready(page)
        pictures_loaded(page)
        idle = {
            "status": page.locator("#status").inner_text(),
            "poster": page.locator("#poster").is_visible(),
            "name": page.locator("#poster-name").inner_text(),
            "alt": page.locator("#portrait").get_attribute("alt"),
        }
        page.screenshot(path=str(ARTIFACTS / "call-idle.png"))

        page.goto(f"{base_url}/")
        page.get_by_role("link", name="Call Ada", exact=True).click()  # starts the call on arrival
        wait_for_state(page, ["speaking"])  # the greeting
        page.get_by_label("Show latency").check()
        page.wait_for_function("document.body.classList.contains('has-video')")
        connected_poster = page.locator("#poster").is_visible()
        transcript_has(page, 3)  # greeting, the caller's words, the reply
        wait_for_state(page, ["listening"])
        lines = page.evaluate(TRANSCRIPT)
        latency = page.locator("#latency").evaluate("(el) => ({...el.dataset})")
        page.screenshot(path=str(ARTIFACTS / "call-connected.png"))

        # the controls from the keyboard: Mute is one Shift+Tab back from Hang up
        page.focus("#hangup")
        page.keyboard.press("Shift+Tab")
        focused = page.evaluate(
            "({id: document.activeElement.id,"
            " outline: getComputedStyle(document.activeElement).outlineStyle})"
        )
        page.keyboard.press("Space")
        muted = page.locator("#mute").get_attribute("aria-pressed")
        mic_enabled = page.evaluate("window.avatarCall.micTrack.enabled")
        page.keyboard.press("Space")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # Hang up
        wait_for_state(page, ["ended"])
        ended = page.locator("#status").inner_text()
        wait_until(lambda: not calls_of(app).open_calls, timeout=10)
    finally:
        page.close()
    ada = app.state.calls.library.character("ada").persona
    assert idle == {"status": "Ready", "poster": True, "name": "Ada", "alt": "Portrait of Ada"}
    assert not connected_poster  # the video took its place
    greeting, heard, reply = lines[:3]
    assert greeting == {"who": "Ada", "said": ada.greeting, "final": True, "cut": ""}
    assert heard["who"] == "You" and heard["said"].startswith("(the user spoke for ")
    assert reply == {"who": "Ada", "said": ada.lines[0], "final": True, "cut": ""}
    assert float(latency["fps"]) > 0
    assert 0 < float(latency["replyMs"]) < TURN_S * 1e3
    assert focused == {"id": "mute", "outline": "solid"}  # a visible focus ring
    assert muted == "true" and mic_enabled is False
    assert ended == "Call ended"


def test_a_scene_call_at_phone_width_names_the_speaker_and_fits(front, browser):
    app, base_url = front
    page = new_page(browser, PHONE)
    try:
        page.goto(f"{base_url}/")
        page.wait_for_selector(".card")
        pictures_loaded(page)
        gallery = page.evaluate(LAYOUT)
        page.screenshot(path=str(ARTIFACTS / "phone-gallery.png"), full_page=True)

        page.goto(f"{base_url}/call?scene=duo")
        ready(page)
        idle = page.evaluate(LAYOUT)
        page.get_by_role("button", name="Start call").click()
        page.wait_for_function(
            "document.getElementById('status').textContent === 'Speaking: Ada'",
            timeout=TURN_S * 1e3,
        )
        # the caller's words pass the floor on (the offline voice's round-robin): Bo answers
        page.wait_for_function(
            "document.getElementById('status').textContent === 'Speaking: Bo'",
            timeout=TURN_S * 1e3,
        )
        in_call = page.evaluate(LAYOUT)
        page.screenshot(path=str(ARTIFACTS / "phone-call.png"), full_page=True)
        transcript_has(page, 3)
        speakers = [line["who"] for line in page.evaluate(TRANSCRIPT)]
        hang_up_and_wait(page, app)
    finally:
        page.close()
    for layout in (gallery, idle, in_call):
        assert layout["scrollWidth"] <= layout["viewport"] == PHONE["width"]
        for control in layout["controls"]:
            assert control["left"] >= 0 and control["right"] <= PHONE["width"], control
            assert control["width"] > 0 and control["height"] > 0, control
    names = {c["name"] for c in in_call["controls"]}
    assert {"Mute", "Hang up", "show-latency", "← All characters"} <= names
    assert {"Start call", "show-latency"} <= {c["name"] for c in idle["controls"]}
    assert speakers[:3] == ["Ada", "You", "Bo"]
