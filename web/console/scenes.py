"""The scene tab's actions: 2-4 characters side by side or in one group photo whose detected
faces are assigned to them, and a preview in which each says its greeting in turn."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app.characters import Box, Face, group_picture, side_by_side
from app.drafts import SceneDraft
from app.inputs import load_image
from app.render import Turn
from app.store import Store
from avatar_engine import detect_faces
from web.console.address import NEW, asked
from web.console.characters import call_link
from web.console.errors import user_errors
from web.console.preview import (
    PreviewRenderer,
    draw_faces,
    preview_owner,
    progress_reports,
    say,
)

SIDE_BY_SIDE, GROUP_PHOTO = "side by side", "group photo"
SLOTS = 4  # the most characters a scene has: one face dropdown each
FORM = ("id", "name", "members", "layout", "photo", *(f"face_{k}" for k in range(SLOTS)))
OPENED = (*FORM, "revision", "picture", "call_link", "video")


@dataclass(frozen=True)
class SceneForm:
    id: str
    name: str
    members: list[str]  # character ids, in speaking order
    layout: str  # SIDE_BY_SIDE or GROUP_PHOTO
    photo: str | None  # an uploaded group photo (None: keep the stored one)
    faces: tuple[int | None, ...]  # per member: its face in the photo (index)

    @classmethod
    def of(cls, *fields: Any) -> SceneForm:
        ident, name, members, layout, photo, *faces = fields
        # the page sends None for a text box it has not filled yet
        return cls((ident or "").strip(), name or "", list(members or []), layout, photo,
                   tuple(faces))  # fmt: skip


class SceneActions:
    def __init__(self, store: Store, previews: PreviewRenderer, *, call_path: str) -> None:
        self.store, self.previews, self.call_path = store, previews, call_path

    def choices(self) -> list[tuple[str, str]]:
        return [("New scene", NEW)] + [
            (f"{self.store.scene(i).name} ({i})", i) for i in self.store.scenes()
        ]

    def picker(self, value: str = NEW) -> dict[str, Any]:
        return gr.update(choices=self.choices(), value=value)

    def member_choices(self) -> list[tuple[str, str]]:
        return [(self.store.character(i).persona.name, i) for i in self.store.characters()]

    def members(self) -> dict[str, Any]:
        """The characters a scene can hold (refreshed when the tab is shown)."""
        return gr.update(choices=self.member_choices())

    def start(self, request: gr.Request | None = None) -> tuple:
        """A page's first view: the picker, the scene its address names (?scene=ID) or an
        empty form, the characters to pick from."""
        ident = asked(request, "scene", self.store.scenes())
        return (self.picker(ident), *self.open(ident), self.members())

    @user_errors
    def open(self, ident: str) -> tuple:
        """The form filled from the stored scene (empty for NEW); values in OPENED order."""
        if ident == NEW:
            form = SceneForm("", "", [], SIDE_BY_SIDE, None, (None,) * SLOTS)
            revision, name = 0, ""
        else:
            scene = self.store.scene(ident)
            members = [c.id for c in scene.characters]
            layout = GROUP_PHOTO if scene.group_photo else SIDE_BY_SIDE
            faces = tuple(range(len(members))) + (None,) * (SLOTS - len(members))
            form = SceneForm(ident, scene.name, members, layout, None, faces)
            revision, name = scene.revision, scene.name
        picture, *slots = self.inspect(*_fields(form))
        values = dict(zip(FORM, (*_fields(form)[:5], *slots), strict=True)) | {
            "id": gr.update(value=form.id, interactive=not form.id),  # an id names files: fixed
            "photo": self.photo_box(form.layout, value=None),
            "revision": revision,
            "picture": picture,
            "call_link": call_link(self.call_path, "scene", form.id, name),
            "video": None,
        }
        return tuple(values[key] for key in OPENED)

    @staticmethod
    def photo_box(layout: str, **value: Any) -> dict[str, Any]:
        """The group photo upload, shown for that layout only."""
        return gr.update(visible=layout == GROUP_PHOTO, **value)

    @user_errors
    def inspect(self, *fields: Any) -> tuple:
        """The scene's picture with its faces marked, then an update per face dropdown."""
        form = SceneForm.of(*fields)
        names = [self.store.character(c).persona.name for c in form.members]
        hidden = [gr.update(visible=False)] * SLOTS
        if form.layout == SIDE_BY_SIDE:
            if not form.members:
                return (None, *hidden)
            picture, boxes = side_by_side(tuple(self.store.character(c) for c in form.members))
            return (draw_faces(picture, boxes, names), *hidden)
        source = self._photo(form)
        if source is None:
            return (None, *hidden)
        image, faces = source
        values = [_slot_value(form.faces[k], k, len(faces)) for k in range(SLOTS)]
        slots = [
            gr.update(
                visible=k < len(names),
                label=f"Face of {names[k]}" if k < len(names) else "Face",
                choices=[(f"Face {n + 1}", n) for n in range(len(faces))],
                value=values[k],
            )
            for k in range(SLOTS)
        ]
        chosen = values[: len(names)]
        picked = [n for n in chosen if n is not None]
        if len(names) >= 2 and len(picked) == len(chosen) and len(set(picked)) == len(picked):
            # every character has a face of its own: show the frame the scene will have
            frame = group_picture(image, [faces[n] for n in picked])
            labels = [f"{name} (face {n + 1})" for name, n in zip(names, picked, strict=True)]
            return (draw_faces(frame.image, frame.face_boxes, labels), *slots)
        if not faces:
            gr.Warning("No face was found in the group photo: upload one with frontal faces.")
        h, w = image.shape[:2]
        boxes = [(c / w, r / h, (c + s) / w, (r + s) / h) for r, c, s in faces]
        return (draw_faces(image, boxes, [f"Face {n + 1}" for n in range(len(faces))]), *slots)

    @user_errors
    def save(self, revision: float | None, *fields: Any) -> tuple:
        form = SceneForm.of(*fields)
        scene = self.store.save_scene(
            self._draft(form), ident=form.id or None, revision=int(revision or 0) or None
        )
        gr.Info(f"Saved scene {scene.name} ({scene.id}, revision {scene.revision}).")
        return (self.picker(scene.id), *self.open(scene.id))

    @user_errors
    def delete(self, ident: str, revision: float | None) -> tuple:
        if not ident:
            raise ValueError("choose a saved scene to delete")
        self.store.delete_scene(ident, revision=int(revision or 0))
        gr.Info(f"Deleted scene {ident}.")
        return (self.picker(NEW), *self.open(NEW))

    @user_errors
    async def preview(
        self,
        request: gr.Request | None,
        *fields: Any,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> str:
        """An mp4 of the scene as the form has it, each character saying its greeting in
        turn, so the speaker can be seen to switch (at most the previews' length, after the
        previews that came first; `request`: whose page asks, gradio passes it)."""
        form = SceneForm.of(*fields)
        picture, boxes, turns = await asyncio.to_thread(self._preview_turns, form)
        progress(0, desc="Rendering")
        path = await self.previews.render(
            preview_owner(request), picture, boxes, turns, **progress_reports(progress)
        )
        return str(path)

    def _preview_turns(self, form: SceneForm) -> tuple[np.ndarray, list[Box], list[Turn]]:
        draft = self._draft(form)
        characters = tuple(self.store.character(c) for c in draft.characters)
        if draft.photo is None:
            picture, boxes = side_by_side(characters)
        else:
            picture, boxes = draft.photo.image, list(draft.photo.face_boxes)
        turns = [  # a character with no greeting says its first scripted line
            say(c.persona, c.persona.greeting or next(iter(c.persona.lines), ""), speaker=k)
            for k, c in enumerate(characters)
        ]
        return picture, boxes, turns

    def _photo(self, form: SceneForm) -> tuple[np.ndarray, list[Face]] | None:
        """The group photo and its faces: a new upload, else the stored scene's picture."""
        if form.photo is not None:
            image = load_image(Path(form.photo))
            return image, detect_faces(image)
        if form.id and form.id in self.store.scenes():
            scene = self.store.scene(form.id)
            if scene.group_photo:
                side = scene.picture.shape[0]  # stored pictures are square
                return scene.picture, [_face_of(box, side) for box in scene.face_boxes]
        return None

    def _draft(self, form: SceneForm) -> SceneDraft:
        members = tuple(form.members)
        if form.layout == SIDE_BY_SIDE:
            return SceneDraft(form.name, members)
        source = self._photo(form)
        if source is None:
            raise ValueError("upload a group photo, or compose the scene side by side")
        image, faces = source
        chosen = form.faces[: len(members)]
        if any(k is None or not 0 <= int(k) < len(faces) for k in chosen):
            raise ValueError("assign one of the photo's detected faces to each character")
        if len(set(chosen)) != len(chosen):
            raise ValueError("each character needs a face of its own: two have the same face")
        return SceneDraft(
            form.name,
            members,
            group_picture(image, [faces[int(k)] for k in chosen if k is not None]),
        )


def _fields(form: SceneForm) -> tuple:
    return (form.id, form.name, form.members, form.layout, form.photo, *form.faces)


def _slot_value(value: int | None, slot: int, faces: int) -> int | None:
    """Keep a valid assignment; else offer face `slot` (the k-th character, k-th face)."""
    if value is not None and 0 <= int(value) < faces:
        return int(value)
    return slot if slot < faces else None


def _face_of(box: Box, side: int) -> Face:
    """A stored face box (fractions of a square picture) as a detection (row, col, side)."""
    x0, y0, x1, _ = box
    return round(y0 * side), round(x0 * side), round((x1 - x0) * side)
