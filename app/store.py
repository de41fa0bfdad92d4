"""The creators' library: characters and scenes in a data directory, laid out like assets/
(characters/<id>/character.json + portrait.png [+ voice.wav], scenes/<id>/scene.json
[+ picture.png]) so that CharacterLibrary reads it.

Why it is built this way:
- A save writes a whole new version directory (versions/<kind>s/<id>/<revision>-<token>/),
  fsyncs it, then atomically replaces the link <kind>s/<id> -> that version. A crash at any
  point leaves the old version or the new one readable, never a mix of their files; the next
  start sweeps what a crash left behind.
- Read-modify-write runs under an flock on <root>/.lock (threads and processes alike), and a
  save names the revision it edits: saving over a newer revision raises ConflictError, so
  two tabs editing at once lose nothing silently.
- Ids pass check_id before any path is made from them.
- The defaults in assets/ are copied in on first start; state.json records which defaults
  were ever seeded, so a deleted default stays deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from PIL import Image

from app.characters import (
    ASSETS,
    ID_PATTERN,
    Character,
    CharacterLibrary,
    Scene,
    check_id,
    id_from_name,
)
from app.drafts import VOICE_RATE, CharacterDraft, SceneDraft

logger = logging.getLogger(__name__)

DATA_ENV = "AVATAR_DATA"  # overrides the default data directory
KINDS = ("character", "scene")
FILES = {"character": "character.json", "scene": "scene.json"}


class ConflictError(RuntimeError):
    """Someone saved (or deleted) the same character or scene since it was opened."""


def default_data_dir() -> Path:
    """$AVATAR_DATA, else the XDG data home (~/.local/share/talking-avatar)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "talking-avatar"


class Store:
    """The data directory: durable, concurrent-safe saves and deletes of characters and
    scenes. Reads go through `library` (a CharacterLibrary over the directory)."""

    def __init__(self, root: Path | str | None = None, *, defaults: Path = ASSETS) -> None:
        self.root = Path(root) if root is not None else default_data_dir()
        for kind in KINDS:
            (self.root / f"{kind}s").mkdir(parents=True, exist_ok=True)
            (self.root / "versions" / f"{kind}s").mkdir(parents=True, exist_ok=True)
        self.library = CharacterLibrary(roots=(self.root,))
        with self._locked():
            for leftover in self.root.glob(".tmp-*"):  # an interrupted state.json write
                leftover.unlink()
            for kind in KINDS:
                self._sweep(kind)
            self._seed(defaults)

    # reads

    def characters(self) -> list[str]:
        return self.library.ids("character")

    def scenes(self) -> list[str]:
        return self.library.ids("scene")

    def character(self, ident: str) -> Character:
        return self.library.character(ident)

    def scene(self, ident: str) -> Scene:
        return self.library.scene(ident)

    # writes

    def save_character(
        self, draft: CharacterDraft, *, ident: str | None = None, revision: int | None = None
    ) -> Character:
        """Create (ident None: derived from the name; or revision None) or update (the
        revision it was opened at) a character; returns it as stored."""
        if len(draft.portrait.face_boxes) != 1:
            raise ValueError("a character's portrait needs exactly one face box")
        files = {"portrait.png": _png(draft.portrait.image)}
        record: dict[str, Any] = {
            "persona": draft.persona.to_dict(),
            "image": "portrait.png",
            "face_box": [round(v, 4) for v in draft.portrait.face_boxes[0]],
        }
        if draft.voice is not None:
            files["voice.wav"] = _wav(draft.voice)
            record["voice"] = "voice.wav"
        with self._locked():
            ident = self._target("character", ident, draft.persona.name, revision)
            record["revision"] = (revision or 0) + 1
            files["character.json"] = _json(record)
            self._commit("character", ident, record["revision"], files)
        logger.info("character saved", extra={"character": ident, "revision": record["revision"]})
        return self.character(ident)

    def save_scene(
        self, draft: SceneDraft, *, ident: str | None = None, revision: int | None = None
    ) -> Scene:
        """Create or update a scene, as save_character does; its characters must exist."""
        members = tuple(check_id("character", c) for c in draft.characters)
        if not 2 <= len(members) <= 4 or len(set(members)) != len(members):
            raise ValueError(f"a scene has 2 to 4 different characters, not {list(members)}")
        if not draft.name.strip():
            raise ValueError("a scene needs a name")
        record: dict = {"name": draft.name.strip(), "characters": list(members)}
        files = {}
        if draft.photo is not None:
            if len(draft.photo.face_boxes) != len(members):
                raise ValueError(
                    f"the group photo has {len(draft.photo.face_boxes)} assigned faces for "
                    f"{len(members)} characters; assign one face to each character"
                )
            files["picture.png"] = _png(draft.photo.image)
            record["picture"] = "picture.png"
            record["face_boxes"] = [[round(v, 4) for v in box] for box in draft.photo.face_boxes]
        with self._locked():
            missing = [c for c in members if c not in self.characters()]
            if missing:
                raise LookupError(f"no character {', '.join(missing)}; save it first")
            ident = self._target("scene", ident, draft.name, revision)
            record["revision"] = (revision or 0) + 1
            files["scene.json"] = _json(record)
            self._commit("scene", ident, record["revision"], files)
        logger.info("scene saved", extra={"scene": ident, "revision": record["revision"]})
        return self.scene(ident)

    def delete_character(self, ident: str, *, revision: int) -> None:
        """Delete a character no scene uses, if it is still at `revision`."""
        with self._locked():
            self._check_revision("character", check_id("character", ident), revision)
            users = [s for s in self.scenes() if ident in self._record("scene", s)["characters"]]
            if users:
                raise ValueError(
                    f"character {ident!r} is in scene(s) {', '.join(users)}: delete those "
                    "scenes or take the character out of them first"
                )
            self._remove("character", ident)
        logger.info("character deleted", extra={"character": ident})

    def delete_scene(self, ident: str, *, revision: int) -> None:
        with self._locked():
            self._check_revision("scene", check_id("scene", ident), revision)
            self._remove("scene", ident)
        logger.info("scene deleted", extra={"scene": ident})

    # internals (all called with the lock held)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _record(self, kind: str, ident: str) -> dict[str, Any]:
        path = self.root / f"{kind}s" / ident / FILES[kind]
        record: dict[str, Any] = json.loads(path.read_text())
        return record

    def _current(self, kind: str, ident: str) -> int | None:
        """The stored revision, or None when there is no such character or scene."""
        if not (self.root / f"{kind}s" / ident / FILES[kind]).is_file():
            return None
        return int(self._record(kind, ident).get("revision", 0))

    def _check_revision(self, kind: str, ident: str, revision: int | None) -> None:
        current = self._current(kind, ident)
        if current == revision:
            return
        if revision is None:
            raise ConflictError(f"a {kind} {ident!r} already exists; pick another name or id")
        if current is None:
            raise ConflictError(
                f"{kind} {ident!r} was deleted (in another tab?) since you opened it; "
                "save it as a new one"
            )
        raise ConflictError(
            f"{kind} {ident!r} was saved elsewhere (revision {current}) since you opened "
            f"revision {revision}; reload it and redo your change"
        )

    def _target(self, kind: str, ident: str | None, name: str, revision: int | None) -> str:
        """The id to save to: a given one at the given revision, or a new one from the name."""
        if ident is not None:
            self._check_revision(kind, check_id(kind, ident), revision)
            return ident
        if revision is not None:
            raise ValueError(f"saving revision {revision} needs the {kind}'s id")
        base, n = id_from_name(name), 1
        taken = set(self.library.ids(kind))
        ident = base
        while ident in taken:
            n += 1
            ident = check_id(kind, f"{base[:60]}-{n}")
        return ident

    def _commit(self, kind: str, ident: str, revision: int, files: dict[str, bytes]) -> None:
        """Write a complete version directory, then switch the link to it in one rename."""
        folder = self.root / "versions" / f"{kind}s" / ident
        folder.mkdir(exist_ok=True)
        token = secrets.token_hex(4)
        staging = folder / f".tmp-{token}"
        staging.mkdir()
        for name, data in files.items():
            _write_synced(staging / name, data)
        _fsync_dir(staging)
        version = folder / f"{revision:08d}-{token}"
        os.rename(staging, version)
        _fsync_dir(folder)
        links = self.root / f"{kind}s"
        link = links / f".tmp-{token}"
        os.symlink(os.path.relpath(version, links), link)
        os.replace(link, links / ident)
        _fsync_dir(links)
        self._prune(kind, ident)

    def _remove(self, kind: str, ident: str) -> None:
        links = self.root / f"{kind}s"
        os.unlink(links / ident)
        _fsync_dir(links)
        shutil.rmtree(self.root / "versions" / f"{kind}s" / ident)

    def _prune(self, kind: str, ident: str) -> None:
        """Drop every version but the linked one and the newest one before it (a reader that
        resolved the link just before a switch may still be opening its files); a version
        newer than the linked one is a save that crashed before its switch."""
        folder = self.root / "versions" / f"{kind}s" / ident
        current = Path(os.path.realpath(self.root / f"{kind}s" / ident)).name
        versions = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".tmp-"))
        keep = {current, *[name for name in versions if name < current][-1:]}
        for path in folder.iterdir():
            if path.name not in keep:
                shutil.rmtree(path)

    def _sweep(self, kind: str) -> None:
        """Clear what an interrupted save or delete left, and adopt plain directories (a
        character copied in by hand) as versions."""
        links = self.root / f"{kind}s"
        versions = self.root / "versions" / f"{kind}s"
        for entry in links.iterdir():
            if entry.name.startswith(".tmp-"):
                entry.unlink()
            elif entry.is_dir() and not entry.is_symlink() and ID_PATTERN.match(entry.name):
                (versions / entry.name).mkdir(exist_ok=True)
                version = versions / entry.name / "00000000-adopted"
                os.rename(entry, version)
                os.symlink(os.path.relpath(version, links), entry)
        for folder in versions.iterdir():
            if (links / folder.name).is_symlink():
                self._prune(kind, folder.name)
            else:
                shutil.rmtree(folder)  # deleted: the link went first

    def _seed(self, defaults: Path) -> None:
        """Copy in the defaults not seeded before (characters first: scenes name them)."""
        state_path = self.root / "state.json"
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        seeded = {kind: set(state.get("seeded", {}).get(kind, [])) for kind in KINDS}
        for kind in KINDS:
            folder = defaults / f"{kind}s"
            names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
            for ident in names:
                if ident in seeded[kind] or not ID_PATTERN.match(ident):
                    continue
                if self._current(kind, ident) is None:
                    source = folder / ident
                    record = json.loads((source / FILES[kind]).read_text())
                    record["revision"] = 1
                    files = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()}
                    files[FILES[kind]] = _json(record)
                    self._commit(kind, ident, 1, files)
                seeded[kind].add(ident)
        state["seeded"] = {kind: sorted(ids) for kind, ids in seeded.items()}
        _replace_synced(state_path, _json(state))


def _png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def _wav(audio: np.ndarray) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, audio, VOICE_RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _json(record: dict) -> bytes:
    return (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replace_synced(path: Path, data: bytes) -> None:
    """Replace one file atomically: a temp file in the same directory, fsynced, renamed."""
    tmp = path.with_name(f".tmp-{secrets.token_hex(4)}-{path.name}")
    _write_synced(tmp, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
