"""The creators' library on disk: defaults, saves, crashes mid-save, concurrent editors and
bad input, each checked against the files themselves."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
from skimage import data

import app.store
from app.characters import crop_portrait, group_picture, id_from_name
from app.drafts import VOICE_RATE, CharacterDraft, SceneDraft, prepare_voice
from app.inputs import InputError
from app.store import ConflictError, Store
from avatar_engine.framing import detect_faces
from llm_bridge.persona import Persona

REPO = Path(__file__).resolve().parents[2]


def library_snapshot(root: Path) -> dict[str, bytes]:
    """Every character's and scene's files as a reader sees them (through the links), by
    path relative to the data directory."""
    files = {}
    for kind in ("characters", "scenes"):
        for entry in sorted((root / kind).iterdir()):
            for path in sorted(entry.iterdir()):
                files[f"{kind}/{entry.name}/{path.name}"] = path.read_bytes()
    return files


def astronaut_draft(name: str = "Nova Two") -> CharacterDraft:
    image = data.astronaut()
    crop = crop_portrait(image, detect_faces(image)[0])
    return CharacterDraft(Persona(name=name, instructions="Be brief."), crop)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data")


def test_defaults_appear_once_and_a_deleted_default_stays_deleted(tmp_path: Path):
    root = tmp_path / "data"
    store = Store(root)
    assert store.characters() == ["ada", "astronaut", "bo"]
    assert store.scenes() == ["duo"]
    ada = store.character("ada")
    assert ada.revision == 1
    assert ada.image.read_bytes() == (REPO / "assets/characters/ada/portrait.png").read_bytes()
    store.delete_scene("duo", revision=1)
    store.delete_character("bo", revision=1)
    again = Store(root)
    assert again.characters() == ["ada", "astronaut"]
    assert again.scenes() == []


def test_save_edit_and_read_back(store: Store):
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(44100) / 44100).astype(np.float32)
    draft = replace(astronaut_draft(), voice=prepare_voice(tone, 44100))
    saved = store.save_character(draft)
    assert (saved.id, saved.revision) == ("nova-two", 1)
    assert saved.face_box == pytest.approx((0.2526, 0.2268, 0.7526, 0.7768), abs=1e-4)
    assert saved.picture().shape == (512, 512, 3)
    voice, rate = soundfile.read(saved.voice, dtype="float32")
    assert rate == VOICE_RATE and len(voice) == VOICE_RATE
    assert np.abs(voice).max() == pytest.approx(0.3, abs=0.01)

    edited = replace(draft.persona, greeting="Hello there.")
    after = store.save_character(replace(draft, persona=edited), ident=saved.id, revision=1)
    assert after.revision == 2 and after.persona.greeting == "Hello there."
    assert store.library.character(saved.id) == after
    store.delete_character(saved.id, revision=2)
    assert saved.id not in store.characters()
    assert not (store.root / "versions/characters" / saved.id).exists()


def test_same_name_gets_a_new_id_not_an_overwrite(store: Store):
    first = store.save_character(astronaut_draft("Ada"))
    assert first.id == "ada-2"
    assert store.character("ada").persona.name == "Ada"
    assert store.character("ada").revision == 1


@pytest.mark.parametrize("crash_at", ["write-1", "write-2", "rename", "replace"])
def test_a_crash_mid_save_leaves_the_old_character(
    store: Store, monkeypatch: pytest.MonkeyPatch, crash_at: str
):
    before = library_snapshot(store.root)
    ada = store.character("ada")
    calls = {"write": 0}
    real_write, real_rename, real_replace = app.store._write_synced, os.rename, os.replace

    def write(path, data):
        calls["write"] += 1
        if crash_at == f"write-{calls['write']}":
            path.write_bytes(data[: len(data) // 2])  # a torn write, then the crash
            raise OSError("simulated crash")
        real_write(path, data)

    def crash_on(name, real):
        def call(*args):
            if crash_at == name:
                raise OSError("simulated crash")
            return real(*args)

        return call

    monkeypatch.setattr(app.store, "_write_synced", write)
    monkeypatch.setattr(app.store.os, "rename", crash_on("rename", real_rename))
    monkeypatch.setattr(app.store.os, "replace", crash_on("replace", real_replace))
    changed = replace(ada.persona, greeting="Never saved.")
    with pytest.raises(OSError, match="simulated crash"):
        store.save_character(
            replace(CharacterDraft.of(ada), persona=changed), ident="ada", revision=1
        )
    monkeypatch.undo()

    fresh = Store(store.root)
    assert library_snapshot(fresh.root) == before
    assert fresh.character("ada") == ada
    leftovers = [p for p in fresh.root.rglob(".tmp-*")]
    assert leftovers == []
    assert len(list((fresh.root / "versions/characters/ada").iterdir())) == 1


KILLER = """
import sys
from dataclasses import replace
from app.drafts import CharacterDraft
from app.store import Store
store = Store(sys.argv[1])
ada = store.character("ada")
print("ready", flush=True)
while True:
    draft = CharacterDraft.of(ada)
    ada = store.save_character(
        replace(draft, persona=replace(draft.persona, greeting=f"rev {ada.revision + 1}")),
        ident="ada", revision=ada.revision,
    )
"""


def test_a_process_killed_while_saving_leaves_a_whole_character(store: Store):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(store.root)], cwd=REPO, stdout=subprocess.PIPE
    )
    assert proc.stdout.readline() == b"ready\n"
    deadline = time.monotonic() + 20
    while store.character("ada").revision < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ada = Store(store.root).character("ada")  # the sweep runs on a possibly torn save
    assert ada.revision >= 5
    assert ada.persona.greeting == f"rev {ada.revision}"  # its files are one version's
    assert ada.picture().shape == (512, 512, 3)


def test_two_editors_one_saves_the_other_gets_a_conflict(store: Store):
    tab_a, tab_b = store.character("bo"), store.character("bo")
    saved = store.save_character(
        replace(CharacterDraft.of(tab_a), persona=replace(tab_a.persona, greeting="From A.")),
        ident="bo",
        revision=tab_a.revision,
    )
    before = library_snapshot(store.root)
    with pytest.raises(ConflictError, match=r"saved elsewhere \(revision 2\).*reload"):
        store.save_character(
            replace(CharacterDraft.of(tab_b), persona=replace(tab_b.persona, greeting="From B.")),
            ident="bo",
            revision=tab_b.revision,
        )
    with pytest.raises(ConflictError, match="saved elsewhere"):
        store.delete_character("bo", revision=tab_b.revision)
    assert library_snapshot(store.root) == before
    assert store.character("bo") == saved


def test_concurrent_saves_all_land(store: Store):
    """Threads hammering one character: each save that did not conflict is one revision."""
    successes, conflicts = [], []

    def editor(k: int) -> None:
        for _ in range(5):
            current = store.character("bo")
            draft = CharacterDraft.of(current)
            try:
                store.save_character(
                    replace(draft, persona=replace(draft.persona, greeting=f"editor {k}")),
                    ident="bo",
                    revision=current.revision,
                )
                successes.append(k)
            except ConflictError:
                conflicts.append(k)

    threads = [threading.Thread(target=editor, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(successes) + len(conflicts) == 20
    assert store.character("bo").revision == 1 + len(successes)


def test_group_photo_scene(store: Store):
    image = data.astronaut()
    pair = np.concatenate([image, image], axis=1)  # [512, 1024, 3]: two faces
    faces = detect_faces(pair)[:2]
    photo = group_picture(pair, faces[::-1])  # the second face is the first character
    scene = store.save_scene(SceneDraft("Twins", ("bo", "astronaut"), photo))
    assert scene.group_photo and scene.picture.shape == (512, 512, 3)
    assert scene.face_boxes[0][0] > 0.5 > scene.face_boxes[1][2]  # bo is the right face
    with pytest.raises(ValueError, match=r"in scene\(s\) duo, twins: delete"):
        store.delete_character("bo", revision=1)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda s: s.save_character(astronaut_draft(), ident="../../etc"), "not valid"),
        (lambda s: s.delete_character("../../etc", revision=1), "not valid"),
        (lambda s: s.delete_scene("../duo", revision=1), "not valid"),
        (lambda s: s.save_scene(SceneDraft("Solo", ("ada",))), "2 to 4"),
        (lambda s: s.save_scene(SceneDraft("Bad", ("ada", "../bo"))), "not valid"),
        (lambda s: s.save_scene(SceneDraft("Ghost", ("ada", "nobody"))), "no character nobody"),
        (lambda s: s.save_character(astronaut_draft("Ada"), ident="ada"), "already exists"),
    ],
)
def test_bad_requests_change_nothing(store: Store, action, message: str):
    before = library_snapshot(store.root)
    with pytest.raises((ValueError, LookupError, ConflictError), match=message):
        action(store)
    assert library_snapshot(store.root) == before


def test_names_make_safe_ids():
    assert id_from_name("../../etc") == "etc"
    assert id_from_name("Dr. Zoë Ng") == "dr-zoe-ng"
    assert id_from_name("///") == "unnamed"
    assert len(id_from_name("x" * 200)) == 64


def test_voice_samples_are_resampled_and_limited():
    tone = np.sin(2 * np.pi * 300 * np.arange(16000) / 16000).astype(np.float32)
    stored = prepare_voice(tone, 16000)
    assert stored.dtype == np.float32 and len(stored) == VOICE_RATE
    spectrum = np.abs(np.fft.rfft(stored))
    assert np.argmax(spectrum) == 300  # 1 s at 24 kHz: bin k is k Hz
    with pytest.raises(InputError, match="31.0 s long; the limit is 30 s"):
        prepare_voice(np.zeros(31 * 16000, np.float32), 16000)


def test_state_records_seeded_defaults(store: Store):
    state = json.loads((store.root / "state.json").read_text())
    assert state["seeded"] == {"character": ["ada", "astronaut", "bo"], "scene": ["duo"]}


def test_a_character_copied_in_by_hand_is_adopted(tmp_path: Path):
    root = tmp_path / "data"
    Store(root)
    shutil.copytree(REPO / "assets/characters/bo", root / "characters/zed")
    store = Store(root)
    assert (root / "characters/zed").is_symlink()
    zed = store.character("zed")
    assert (zed.persona.name, zed.revision) == ("Bo", 0)
    edited = replace(zed.persona, name="Zed")
    saved = store.save_character(replace(CharacterDraft.of(zed), persona=edited), ident="zed",
                                 revision=0)  # fmt: skip
    assert (saved.persona.name, saved.revision) == ("Zed", 1)
    assert len(list((root / "versions/characters/zed").iterdir())) == 2  # and the one before


def persona(**texts) -> Persona:
    return Persona(**({"name": "Nova", "instructions": "Be brief."} | texts))


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ({"name": "N" * 81}, "the name is 81 characters long; the limit is 80"),
        ({"instructions": "x" * 1_000_000}, "instructions is 1,000,000 characters long; the limit"),
        ({"greeting": "Hi. " * 2500}, "the greeting is 10,000 characters long; the limit is 500"),
        ({"lines": ["Yes."] * 201}, "there are 201 scripted lines; the limit is 200"),
        ({"lines": ["Yes.", "y" * 501]}, "scripted line 2 is 501 characters long; the limit"),
    ],
)  # fmt: skip
def test_texts_are_capped_with_their_limit(store: Store, texts: dict, message: str):
    """A probe stored a 1 MB persona and previewed a 10,000-character greeting."""
    portrait = astronaut_draft().portrait
    before = library_snapshot(store.root)
    with pytest.raises(ValueError, match=message):
        store.save_character(CharacterDraft(persona(**texts), portrait))
    with pytest.raises(ValueError, match="the scene's name is 81 characters long"):
        store.save_scene(SceneDraft("S" * 81, ("ada", "bo")))
    assert library_snapshot(store.root) == before
    at_limits = persona(name="N" * 80, greeting="g" * 500, lines=["l" * 500] * 200)
    assert store.save_character(CharacterDraft(at_limits, portrait)).persona == at_limits


@pytest.mark.parametrize("ident", [None, 7, ["ada"]])
def test_an_id_that_is_not_text_is_refused_in_words(store: Store, ident):
    """`open_character(None)` raised a bare TypeError from the id pattern."""
    with pytest.raises(ValueError, match="give a character id"):
        store.character(ident)
    with pytest.raises(ValueError, match="give a character id"):
        store.delete_character(ident, revision=1)
