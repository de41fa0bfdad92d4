"""The console driven for real: the web app with the console mounted, served by uvicorn on a
loopback port, called through gradio_client as the page calls it; previews render on the
random micro engine and are checked by decoding the mp4."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import av
import httpx
import numpy as np
import pytest
import soundfile
from gradio.processing_utils import hash_file
from gradio.utils import get_upload_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from playwright.sync_api import expect, sync_playwright
from skimage import data

from app.characters import ASSETS
from app.drafts import UPLOAD_MAX_BYTES
from app.render import speak
from app.store import Store
from avatar_engine.audio.turns import plan_turns
from tests.app.test_inputs import png_claiming
from tests.app.test_store import library_snapshot
from tests.web.conftest import served, wait_until
from tests.web.test_call_browser import ARTIFACTS, launch
from web.app import create_app
from web.console import address as console_address
from web.console import build_console
from web.console.characters import NEW, OPENED, CharacterActions
from web.console.preview import PreviewRenderer, say
from web.console.scenes import SceneActions


@dataclass
class Console:
    client: Client
    store: Store
    url: str
    previews: Path  # where this console's preview mp4s are written

    def call(self, api: str, *args):
        return self.client.predict(*args, api_name=api)

    def another_tab(self, tmp_path: Path) -> Client:
        return Client(self.url, verbose=False, analytics_enabled=False, download_files=tmp_path)


@pytest.fixture
def console(tmp_path: Path, micro_engine) -> Iterator[Console]:
    store = Store(tmp_path / "data")
    previews = tmp_path / "previews"
    previews.mkdir()
    blocks = build_console(store, render_engine=lambda: micro_engine, preview_dir=previews)
    app = create_app(engine_factory=lambda: micro_engine, library=store.library, console=blocks)
    with served(app) as base:
        url = f"{base}/console/"
        client = Client(url, verbose=False, analytics_enabled=False, download_files=tmp_path)
        yield Console(client, store, url, previews)


def png(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).save(path)
    return path


def form(**changes):
    """The character form's fields (web.console.characters.FORM order)."""
    fields = {
        "id": "",
        "name": "Nova Two",
        "instructions": "You are Nova Two. Be brief.",
        "greeting": "Hello, I am Nova.",
        "lines": "One.\nTwo.",
        "openai_voice": "sage",
        "espeak_voice": "en+f2",
        "espeak_rate": 170,
        "espeak_pitch": 50,
        "picture": None,
        "face": 0,
        "voice": None,
        "remove_voice": False,
    } | changes
    return list(fields.values())


def assert_follows(path: str, speech_s: float) -> None:
    """The mp4 has a frame for every 1/fps of the speech, and its audio lasts as long as its
    video (aac adds at most one 1024-sample frame of padding)."""
    with av.open(path) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        fps = int(video.average_rate)
        frames = sum(1 for _ in container.decode(video))
        container.seek(0)
        samples = sum(f.samples for f in container.decode(sound))
    assert fps == 25
    assert frames == math.ceil(speech_s * fps)
    audio_s = samples / sound.rate
    assert frames / fps <= audio_s <= frames / fps + 1024 / sound.rate


def test_create_preview_edit_and_delete_a_character(console: Console, tmp_path: Path):
    picture = png(tmp_path / "astronaut.png", data.astronaut())
    marked, face, portrait = console.call("/inspect_picture", handle_file(picture), 0)
    assert face["value"] == 0 and face["choices"][0] == ["Face 1 (largest)", 0]
    assert np.asarray(Image.open(portrait)).shape[:2] == (512, 512)
    with pytest.raises(AppError, match="face 10 is not one of the 3 faces found"):
        console.call("/inspect_picture", handle_file(picture), 9)

    opened = console.call("/save_character", 0, *form(picture=handle_file(picture)))
    picker, ident, revision = opened[0]["value"], opened[1]["value"], opened[14]
    assert (picker, ident, revision) == ("nova-two", "nova-two", 1)
    assert '/call?character=nova-two"' in opened[17]
    nova = console.store.character("nova-two")
    assert nova.persona.lines == ("One.", "Two.") and nova.persona.espeak_voice == "en+f2"
    assert nova.face_box == pytest.approx((0.2526, 0.2268, 0.7526, 0.7768), abs=1e-4)

    video = console.call("/preview_character", "greeting (espeak voice)", *form(id="nova-two"))
    speech, rate = speak(nova.persona, "Hello, I am Nova.")
    assert_follows(video, len(speech) / rate)

    edited = console.call(
        "/save_character", 1, *form(id="nova-two", greeting="Hi again.", espeak_rate=200)
    )
    assert edited[14] == 2
    nova = console.store.character("nova-two")
    assert (nova.persona.greeting, nova.persona.espeak_rate, nova.revision) == ("Hi again.", 200, 2)
    assert nova.picture().shape == (512, 512, 3)  # kept: no new picture was uploaded

    console.call("/delete_character", "nova-two", 2)
    assert "nova-two" not in console.store.characters()


def test_a_voice_sample_is_stored_resampled_and_previewed(console: Console, tmp_path: Path):
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(int(1.5 * 44100)) / 44100)
    wav = tmp_path / "voice.wav"
    soundfile.write(wav, tone, 44100)
    rate_and_samples = console.call("/inspect_voice", handle_file(wav))
    assert Path(rate_and_samples).is_file()
    opened = console.call("/save_character", 1, *form(id="ada", voice=handle_file(wav)))
    ada = console.store.character("ada")
    assert ada.revision == 2 and opened[1]["value"] == "ada"
    stored, rate = soundfile.read(ada.voice)
    assert (rate, len(stored)) == (24000, 36000)
    with Image.open(ASSETS / "characters/ada/portrait.png") as shipped:
        assert np.array_equal(ada.picture(), np.asarray(shipped.convert("RGB")))  # kept
    video = console.call("/preview_character", "voice sample", *form(id="ada"))
    assert_follows(video, 1.5)


def test_a_stale_tab_gets_a_conflict_and_nothing_is_lost(console: Console, tmp_path: Path):
    tab_b = console.another_tab(tmp_path / "b")
    console.call("/open_character", "bo")
    tab_b.predict("bo", api_name="/open_character")
    console.call("/save_character", 1, *form(id="bo", name="Bo", greeting="From A."))
    before = library_snapshot(console.store.root)
    with pytest.raises(
        AppError, match=r"saved elsewhere \(revision 2\) since you opened revision 1"
    ):
        tab_b.predict(1, *form(id="bo", name="Bo", greeting="From B."), api_name="/save_character")
    with pytest.raises(AppError, match="saved elsewhere"):
        tab_b.predict("bo", 1, api_name="/delete_character")
    assert library_snapshot(console.store.root) == before
    assert console.store.character("bo").persona.greeting == "From A."


def bad_files(tmp_path: Path) -> dict[str, Path]:
    picture = tmp_path / "good.png"
    png(picture, data.astronaut())
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(picture.read_bytes()[:5000])
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming(20000, 20000))
    text = tmp_path / "notes.png"
    text.write_text("these are notes, not a picture\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    long = tmp_path / "long.wav"  # 2 minutes by its header (under the upload limit); sparse
    soundfile.write(long, np.zeros(16000, dtype=np.int16), 16000, subtype="PCM_16")
    header = bytearray(long.read_bytes()[:44])
    data_bytes = 120 * 16000 * 2
    header[4:8], header[40:44] = struct.pack("<I", 36 + data_bytes), struct.pack("<I", data_bytes)
    with long.open("wb") as f:
        f.write(header)
        f.truncate(44 + data_bytes)
    return {"picture": picture, "truncated": truncated, "huge": huge, "text": text,
            "empty": empty, "long": long}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated", "damaged or truncated"),
        ("huge", "the image is larger than the limit of 40 megapixels"),
        ("text", "not a picture in a supported format"),
        ("empty", "is empty \\(0 bytes\\)"),
        ("long", "120.0 s long; the limit is 30 s"),
        ("traversal", "character id '../../etc' is not valid"),
        ("no picture", "upload a picture of the character"),
        ("bad espeak voice", "espeak-ng cannot speak with voice 'xx-nope'"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    console: Console, tmp_path: Path, case: str, message: str
):
    files = bad_files(tmp_path)
    upload = {k: handle_file(v) for k, v in files.items()}
    fields = {
        "truncated": form(picture=upload["truncated"]),
        "huge": form(picture=upload["huge"]),
        "text": form(picture=upload["text"]),
        "empty": form(picture=upload["picture"], voice=upload["empty"]),
        "long": form(picture=upload["picture"], voice=upload["long"]),
        "traversal": form(id="../../etc", picture=upload["picture"]),
        "no picture": form(),
        "bad espeak voice": form(picture=upload["picture"], espeak_voice="xx-nope"),
    }[case]
    before = library_snapshot(console.store.root)
    with pytest.raises(AppError, match=message):
        console.call("/save_character", 0, *fields)
    with pytest.raises(AppError, match=message):
        console.call("/preview_character", "greeting (espeak voice)", *fields)
    assert library_snapshot(console.store.root) == before
    assert console.store.characters() == ["ada", "astronaut", "bo"]


def test_bad_uploads_are_refused_when_inspected(console: Console, tmp_path: Path):
    files = bad_files(tmp_path)
    with pytest.raises(AppError, match="not a picture"):
        console.call("/inspect_picture", handle_file(files["text"]), 0)
    with pytest.raises(AppError, match="120.0 s long"):
        console.call("/inspect_voice", handle_file(files["long"]))


def file_data(path: str | Path) -> dict:
    """A FileData payload as any client can write it: it names a path on the server."""
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def raw_call(url: str, api: str, *data) -> tuple[str, str]:
    """One API call over plain HTTP, without gradio_client (which uploads files first): the
    last event of its stream and that event's data."""
    with httpx.Client(base_url=url, timeout=120) as http:
        started = http.post(f"gradio_api/call/{api}", json={"data": list(data)})
        assert started.status_code == 200, started.text
        stream = http.get(f"gradio_api/call/{api}/{started.json()['event_id']}")
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", stream.text, re.MULTILINE)
    return events[-1]


def upload(url: str, path: Path) -> dict:
    """A file sent through gradio's upload route, as the page sends it."""
    with httpx.Client(base_url=url, timeout=60) as http, path.open("rb") as f:
        response = http.post("gradio_api/upload", files={"files": (path.name, f)})
    assert response.status_code == 200, response.text
    return file_data(response.json()[0])


def test_a_client_cannot_name_a_server_file(console: Console, tmp_path: Path):
    """A FileData names any path it likes; only files uploaded through gradio's route reach
    the actions, so no other file on the server comes back as a preview."""
    noise = np.random.default_rng()  # content no earlier run has left in gradio's cache
    picture = png(tmp_path / "server.png", noise.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    wav = tmp_path / "server.wav"
    soundfile.write(wav, 0.1 * noise.standard_normal(24000), 24000)
    uploads = get_upload_folder()
    climbing = Path(uploads, os.path.relpath(picture, uploads))  # {uploads}/../../x.png
    before = library_snapshot(console.store.root)
    refused = {
        "inspect_picture": (file_data(picture), 0),
        "inspect_voice": (file_data(wav),),
        "save_character": (0, *form(picture=file_data(climbing))),
        "preview_character": ("voice sample", *form(id="ada", voice=file_data(wav))),
        "save_scene": (0, "", "Pair", ["ada", "bo"], "group photo", file_data(picture),
                       0, 1, None, None),
    }  # fmt: skip
    for api, inputs in refused.items():
        event, message = raw_call(console.url, api, *inputs)
        assert event == "error", (api, event, message[:200])
        assert "was not uploaded by a user" in message, (api, message)
    assert not any((Path(uploads) / hash_file(f)).exists() for f in (picture, wav))  # no copy
    assert library_snapshot(console.store.root) == before

    event, output = raw_call(console.url, "inspect_picture", upload(console.url, picture), 0)
    assert event == "complete" and "/gradio_api/file=" in output  # the faces-found picture
    event, output = raw_call(console.url, "inspect_voice", upload(console.url, wav))
    assert event == "complete" and "/gradio_api/file=" in output  # the voice, for listening


def test_a_group_photo_scene_and_its_preview(console: Console, tmp_path: Path, micro_engine):
    # two close-ups side by side: faces big enough for the micro engine's 4x4 token grid
    pair = png(tmp_path / "pair.png", np.concatenate([data.astronaut()[40:190, 160:310]] * 2, 1))
    # ada is the right face (face 2), bo the left one (face 1)
    fields = ["", "Pair", ["ada", "bo"], "group photo", handle_file(pair), 1, 0, None, None]
    opened = console.call("/save_scene", 0, *fields)
    assert (opened[1]["value"], opened[2]) == ("pair", "Pair")
    assert '/call?scene=pair"' in opened[-2]
    scene = console.store.scene("pair")
    assert scene.group_photo and [c.id for c in scene.characters] == ["ada", "bo"]
    assert scene.face_boxes[0][0] > 0.5 > scene.face_boxes[1][2]

    video = console.call("/preview_scene", "pair", "Pair", ["ada", "bo"], "group photo", None,
                         0, 1, None, None)  # fmt: skip
    plan = plan_turns(
        micro_engine.encoder,
        micro_engine.preset,
        [say(c.persona, c.persona.greeting, speaker=k) for k, c in enumerate(scene.characters)],
    )
    assert_follows(video, len(plan.audio(22050)) / 22050)  # the second starts a chunk later

    with pytest.raises(AppError, match="each character needs a face of its own"):
        console.call("/save_scene", 1, "pair", "Pair", ["ada", "bo"], "group photo", None,
                     0, 0, None, None)  # fmt: skip
    with pytest.raises(AppError, match="in scene\\(s\\) duo, pair"):
        console.call("/delete_character", "bo", 1)
    console.call("/delete_scene", "pair", 1)
    assert console.store.scenes() == ["duo"]


def test_a_preview_reports_its_progress_up_to_the_last_frame(tmp_path: Path, micro_engine):
    store = Store(tmp_path / "data")
    actions = CharacterActions(store, PreviewRenderer(lambda: micro_engine), call_path="/call")
    reports = []
    video = asyncio.run(
        actions.preview(
            "greeting (espeak voice)",
            None,  # no gradio request: a direct call
            *form(id="bo", name="Bo", greeting="Hey."),
            progress=lambda value, **how: reports.append(value),
        )
    )
    with av.open(video) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert reports[0] == 0
    done = [value[0] for value in reports[1:]]
    assert done == sorted(done) and len(done) >= 2  # one report per chunk
    assert reports[-1] == (frames, frames)


def test_a_preview_needs_something_to_say(console: Console):
    with pytest.raises(AppError, match="Nova Two has nothing to say in a preview"):
        console.call("/preview_character", "greeting (espeak voice)", *form(id="ada", greeting=""))
    with pytest.raises(AppError, match="there is no voice sample"):
        console.call("/preview_character", "voice sample", *form(id="ada"))


def test_the_page_opens_a_character_and_shows_the_faces_of_an_upload(
    console: Console, tmp_path: Path
):
    """In Chromium: the page's own events (load, picking, upload) reach the actions."""
    picture = png(tmp_path / "astronaut.png", data.astronaut())
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1400})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(console.url)
            page.get_by_label("Character", exact=True).click()
            page.get_by_role("option", name="Ada (ada)").click()
            expect(page.get_by_label("Name", exact=True).first).to_have_value("Ada")
            expect(page.locator("a.start-call").first).to_have_attribute(
                "href", "/call?character=ada"
            )
            page.locator("#character-picture input[type=file]").set_input_files(picture)
            expect(page.locator("#faces-found img")).to_be_visible(timeout=15_000)
            expect(page.get_by_label("Face", exact=True)).to_have_value("Face 1 (largest)")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / "console.png", full_page=True)
            print(f"console screenshot: {ARTIFACTS / 'console.png'}")
            toasts = page.locator(".toast-body")  # where gr.Error and gr.Warning show
            expect(toasts).to_have_count(0)
            page.locator("#character-picture button[aria-label='Clear']").click()
            page.locator("#character-picture input[type=file]").set_input_files(
                bad_files(tmp_path)["text"]
            )
            expect(toasts).to_contain_text("Error")
            expect(toasts).to_contain_text("the file is not a picture in a supported format")
        finally:
            browser.close()
    assert errors == []


def test_an_upload_over_the_limit_is_refused_before_it_is_stored(console: Console, tmp_path):
    """Gradio took a 200 MB upload into its temp folder before any check; now its upload
    route stops at the largest file the library takes (app.drafts.UPLOAD_MAX_BYTES)."""
    assert UPLOAD_MAX_BYTES == 20 * 2**20
    with httpx.Client(base_url=console.url, timeout=60) as http:
        assert http.get("config").json()["max_file_size"] == UPLOAD_MAX_BYTES  # the page's
        big = tmp_path / "big-upload-e5d1.png"
        with big.open("wb") as f:
            f.truncate(UPLOAD_MAX_BYTES + 1)
        with big.open("rb") as f:
            refused = http.post("gradio_api/upload", files={"files": (big.name, f)})
        assert refused.status_code == 413
        assert f"maximum allowed size of {UPLOAD_MAX_BYTES} bytes" in refused.text
    assert not list(Path(get_upload_folder()).rglob(big.name))
    assert upload(console.url, png(tmp_path / "small.png", data.astronaut()))  # others pass


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("greeting", "Hello" * 2000, "the greeting is 10,000 characters long; the limit is 500"),
        ("instructions", "x" * 1_000_000, "instructions is 1,000,000 characters long"),
        ("lines", "Yes.\n" * 201, "there are 201 scripted lines; the limit is 200"),
    ],
)
def test_long_texts_are_refused_with_their_limit(console: Console, field, text, message):
    """A 1 MB persona was saved and a 10,000-character greeting previewed (15,557 frames)."""
    before = library_snapshot(console.store.root)
    with pytest.raises(AppError, match=message):
        console.call("/save_character", 1, *form(id="ada", **{field: text}))
    with pytest.raises(AppError, match=message):
        console.call(
            "/preview_character", "greeting (espeak voice)", *form(id="ada", **{field: text})
        )
    assert library_snapshot(console.store.root) == before
    assert not list(console.previews.rglob("*.mp4"))


def test_opening_no_character_says_so(console: Console):
    """open_character(None) answered with a raw TypeError."""
    with pytest.raises(AppError, match="give a character id"):
        console.call("/open_character", None)
    with pytest.raises(AppError, match="give a scene id"):
        console.call("/open_scene", None)


def fn_index(url: str, api: str) -> int:
    dependencies = httpx.get(f"{url}config").json()["dependencies"]
    return next(d["id"] for d in dependencies if d["api_name"] == api)


def test_a_preview_cancelled_through_the_page_stops_rendering(
    console: Console, micro_engine, monkeypatch
):
    """Cancelling (the page's stop button posts gradio's /cancel) did not stop the render:
    it ran to its end and wrote its mp4. Now it stops at its next chunk and writes nothing."""
    submitted = []
    submit = micro_engine.runtime.submit
    monkeypatch.setattr(
        micro_engine.runtime, "submit", lambda *a: (submitted.append(1), submit(*a))[1]
    )
    preview = fn_index(console.url, "preview_character")
    config = httpx.get(f"{console.url}config").json()
    stop = [d for d in config["dependencies"] if preview in (d.get("cancels") or [])]
    assert len(stop) == 1  # the tab's "Stop preview" button cancels it

    session = "cancel-test"
    greeting = "Hello, I am Nova. I speak for a while, so that this preview takes some chunks."
    inputs = ["greeting (espeak voice)", *form(id="ada", greeting=greeting)]
    with httpx.Client(base_url=console.url, timeout=60) as http:

        def join() -> str:
            joined = http.post("gradio_api/queue/join", json={
                "data": inputs, "fn_index": preview, "session_hash": session,
                "event_data": None, "trigger_id": None})  # fmt: skip
            assert joined.status_code == 200, joined.text
            return joined.json()["event_id"]

        event = join()
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as sse:
            wait_until(lambda: submitted, timeout=60)  # its first chunk is rendering
            second = join()  # the same page again, while its first renders: refused
            for line in sse.iter_lines():
                message = json.loads(line.removeprefix("data: ")) if line else {}
                if message.get("msg") == "process_completed":
                    assert message["event_id"] == second and not message["success"]
                    assert "your previous preview is still waiting or rendering" in str(message)
                    break
            cancelled = http.post(
                "gradio_api/cancel",
                json={"session_hash": session, "fn_index": preview, "event_id": event},
            )
            assert cancelled.status_code == 200, cancelled.text
            assert not micro_engine.stream_lock.locked()  # stopped before /cancel answered
    chunks = len(submitted)
    speech, rate = speak(console.store.character("ada").persona, greeting)
    assert chunks <= 2 < micro_engine.geometry.chunk_of_frame(len(speech) * 25 // rate)
    time.sleep(0.5)
    assert len(submitted) == chunks and not list(console.previews.rglob("*.mp4"))


def test_the_address_opens_a_character_or_a_scene(tmp_path: Path):
    """The gallery's Edit links: /console/?character=ID, ?scene=ID; anything else: empty."""
    store = Store(tmp_path / "data")
    renderer = PreviewRenderer(None)
    people = CharacterActions(store, renderer, call_path="/call")
    groups = SceneActions(store, renderer, call_path="/call")

    def address(**query: str) -> SimpleNamespace:  # what the actions read of a gr.Request
        return SimpleNamespace(query_params=query)

    bo = people.start(address(character="bo"))
    assert bo[0]["value"] == "bo" and bo[1 + OPENED.index("name")] == "Bo"
    assert [
        people.start(a)[0]["value"] for a in (address(character="nobody"), address(), None)
    ] == [NEW] * 3
    assert groups.start(address(scene="duo"))[0]["value"] == "duo"
    assert groups.start(address(scene="../ada"))[0]["value"] == NEW
    assert console_address.tab(address(scene="duo")).selected == "scenes"
    assert console_address.tab(address(character="bo")).selected == "characters"
