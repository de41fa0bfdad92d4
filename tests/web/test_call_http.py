"""The offer endpoint's refusals (a bad offer 400, an unknown id 404, a full server 503), each
with a message and nothing built or left behind; and the app's pages and config."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app import conversation
from app.casting import CastRequest
from app.local_call import CallLimits, LocalCalls
from tests.web.conftest import (
    LIBRARY,
    call,
    calls_of,
    make_offer,
    offer_sdp,
    post_offer,
    served,
)
from web.app import create_app


@pytest.fixture
def counted(micro_engine):
    """An app whose engine factory counts the engines it was asked for."""
    built = []

    def factory():
        built.append(micro_engine)
        return micro_engine

    return create_app(engine_factory=factory, library=LIBRARY, sessions=1), built


GOOD = asyncio.run(offer_sdp())
NO_VIDEO = "\r\n".join(GOOD.split("m=video")[0].splitlines()) + "\r\n"
MALFORMED = {
    "not SDP": ("hello", "not start with 'v=0'"),
    "empty": ("", "not start with 'v=0'"),
    "no media": ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no media sections"),
    "cut short": (GOOD[: len(GOOD) // 3], "cannot be parsed"),
    "no video": (NO_VIDEO, "receives no video"),
    "no fingerprint": (GOOD.replace("a=fingerprint", "a=x-fingerprint"), "no DTLS fingerprint"),
    "no ICE": (GOOD.replace("a=ice-pwd", "a=x-ice-pwd"), "no ICE credentials"),
    "no microphone": (GOOD.replace("opus/48000", "speex/48000"), "sends no Opus audio"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_offer_is_400_with_why_and_creates_nothing(counted, case):
    app, built = counted
    sdp, why = MALFORMED[case]
    threads = threading.active_count()
    with TestClient(app) as http:
        response = http.post("/api/call/offer", json={"sdp": sdp, "type": "offer"})
        assert response.status_code == 400, response.text
        assert why in response.json()["detail"]
        assert calls_of(app).open_calls == [] and built == []
    assert threading.active_count() == threads


def test_a_request_that_is_not_an_offer_is_400(counted):
    app, built = counted
    with TestClient(app) as http:
        answer = http.post("/api/call/offer", json={"sdp": GOOD, "type": "answer"})
        missing = http.post("/api/call/offer", json={"type": "offer"})
        both = http.post("/api/call/offer", json={"sdp": GOOD, "type": "offer", "scene": "duo",
                                                  "character": "ada"})  # fmt: skip
    assert answer.status_code == 400 and 'type "offer"' in answer.json()["detail"]
    assert missing.status_code == 400 and "sdp" in missing.json()["detail"]
    assert both.status_code == 400 and "not both" in both.json()["detail"]
    assert built == []


@pytest.mark.parametrize(
    ("who", "status", "why"),
    [
        ({"character": "nobody"}, 404, "no character 'nobody'; known characters: ada,"),
        ({"scene": "nowhere"}, 404, "no scene 'nowhere'; known scenes: duo"),
        ({"character": "../ada"}, 400, "character id '../ada' is not valid"),
    ],
)
def test_an_unknown_or_invalid_id_is_refused_before_anything_is_built(counted, who, status, why):
    app, built = counted
    with TestClient(app) as http:
        offer = http.post("/api/call/offer", json={**who, "sdp": GOOD, "type": "offer"})
        cast = http.get("/api/cast", params=who)
    for response in (offer, cast):
        assert response.status_code == status, response.text
        assert why in response.json()["detail"]
    assert built == [] and calls_of(app).open_calls == []


def test_a_call_over_capacity_is_busy_and_the_running_call_plays_on(web_app, micro_engine):
    fps = micro_engine.fps

    async def two_calls(base_url: str) -> tuple[httpx.Response, int]:
        first = await call(base_url, character="ada")
        try:
            await first.frames(fps // 2)  # it plays
            pc, _ = await make_offer()
            body = {"character": "bo", "sdp": pc.localDescription.sdp, "type": "offer"}
            second = await post_offer(base_url, body, source="127.0.0.2")  # another caller
            await pc.close()
            before = first.video_frames
            await asyncio.sleep(1.0)
            return second, first.video_frames - before
        finally:
            await first.close()

    with served(web_app) as base_url:
        busy, played = asyncio.run(two_calls(base_url))
    assert busy.status_code == 503
    assert busy.json() == {
        "error": "busy",
        "detail": "all 1 call slot(s) are in use; try again when a call has ended",
    }
    assert played >= fps // 2  # about fps in that second: the running call was not held up
    assert calls_of(web_app).open_calls == []


def test_a_call_right_after_a_hang_up_waits_for_its_slot_instead_of_busy(web_app, monkeypatch):
    # a slow close (livekit's default wait for the last transcript, 2 s) keeps the slot taken
    monkeypatch.setattr(conversation, "CLOSE_TRANSCRIPT_S", 2.0)

    async def again(base_url: str) -> tuple[int, int]:
        first = await call(base_url, character="ada")
        await first.frames(2)
        await first.close()
        await asyncio.sleep(0.3)  # the server has seen the hang-up and is closing the call
        closing = sum(c.closing is not None for c in calls_of(web_app).open_calls)
        second = await call(base_url, character="bo")  # raises if refused
        await second.frames(2)
        await second.close()
        return closing, second.video_frames

    with served(web_app) as base_url:
        closing, frames = asyncio.run(again(base_url))
    assert closing == 1 and frames >= 2


def test_an_answered_call_that_never_connects_is_given_up(micro_engine):
    calls = LocalCalls(
        engine_factory=lambda: micro_engine,
        library=LIBRARY,
        limits=CallLimits(connect_window_s=0.5),
    )

    async def offer_and_vanish() -> tuple[int, float]:
        pc, _ = await make_offer()
        await calls.offer(pc.localDescription.sdp, "offer", CastRequest(character="ada"))
        await pc.close()  # before it ever sets the answer: no ICE check reaches the server
        opened, started = len(calls.open_calls), time.monotonic()
        while calls.open_calls:
            await asyncio.sleep(0.02)
        return opened, time.monotonic() - started

    opened, took = asyncio.run(offer_and_vanish())
    assert opened == 1 and took < 5.0
    assert calls.admission.held == [] and not micro_engine.stream_lock.locked()


def test_the_server_ends_its_calls_when_it_stops(web_app, micro_engine):
    async def connect(base_url: str):
        client = await call(base_url, character="ada")
        await client.frames(2)
        return client

    with served(web_app) as base_url:
        loop = asyncio.new_event_loop()
        client = loop.run_until_complete(connect(base_url))
        assert len(calls_of(web_app).open_calls) == 1
    # uvicorn's shutdown ran the lifespan: the call is gone, its engine free
    assert calls_of(web_app).open_calls == [] and not micro_engine.stream_lock.locked()
    loop.run_until_complete(client.close())
    loop.close()


def test_pages_and_config(web_app):
    with TestClient(web_app) as http:
        root = http.get("/", follow_redirects=False)
        library = http.get("/api/library")
        portrait = http.get("/api/pictures/character/ada")
        scene_picture = http.get("/api/pictures/scene/duo")
        unknown_picture = http.get("/api/pictures/character/nobody")
        page = http.get("/call?character=ada")
        script = http.get("/static/call.js")
        config = http.get("/api/config")
        cast = http.get("/api/cast", params={"scene": "duo"})
    assert root.status_code == 200 and 'src="/static/gallery.js"' in root.text
    listing = library.json()
    ada = listing["characters"][0]
    assert [c["name"] for c in listing["characters"]] == ["Ada", "Nova", "Bo"]
    assert ada == {
        "id": "ada",
        "name": "Ada",
        "picture": "/api/pictures/character/ada?v=0",
        "call": "/call?character=ada",
        "edit": None,  # no console mounted: nothing to edit with, no New card
    }
    assert listing["new"] is None
    (duo,) = listing["scenes"]
    assert (duo["name"], duo["characters"], duo["call"]) == (
        "Ada and Bo",
        ["Ada", "Bo"],
        "/call?scene=duo",
    )
    assert portrait.headers["content-type"] == "image/png"
    assert portrait.content == LIBRARY.character("ada").image.read_bytes()
    picture = np.asarray(Image.open(io.BytesIO(scene_picture.content)))
    assert np.array_equal(picture, LIBRARY.scene("duo").picture)
    assert unknown_picture.status_code == 404
    assert unknown_picture.json()["detail"].startswith("no character 'nobody'")
    assert page.status_code == 200 and '<video id="avatar"' in page.text
    assert script.status_code == 200 and "/api/call/offer" in script.text
    assert config.json() == {"transport": "local"}
    assert cast.json() == {
        "name": "Ada and Bo",
        "characters": ["Ada", "Bo"],
        "picture": "/api/pictures/scene/duo?v=0",
    }
