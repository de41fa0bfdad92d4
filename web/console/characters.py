"""The character tab's actions: open, check uploads, save, delete, preview. Each reads what
it needs from the form and the store, so every one of them is also a plain API call."""

from __future__ import annotations

import asyncio
import html
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app.characters import Face, FaceCrop, check_id, crop_portrait
from app.drafts import (
    VOICE_MAX_BYTES,
    VOICE_MAX_SECONDS,
    VOICE_RATE,
    CharacterDraft,
    prepare_voice,
)
from app.inputs import load_audio, load_image
from app.render import Turn
from app.store import Store
from avatar_engine import detect_faces
from llm_bridge.offline.tts import check_voice
from llm_bridge.persona import Persona
from web.console.address import NEW, asked
from web.console.errors import user_errors
from web.console.preview import (
    PreviewRenderer,
    draw_faces,
    preview_owner,
    progress_reports,
    say,
)

SPEAK_GREETING, SPEAK_SAMPLE = "greeting (espeak voice)", "voice sample"
ESPEAK_VOICES = ("en", "en+f2", "en+f3", "en+m3", "en-us", "en-us+f2", "en-gb", "de", "fr", "es")
# The form's fields, in the order of the inputs `form()` takes.
FORM = (
    "id", "name", "instructions", "greeting", "lines", "openai_voice", "espeak_voice",
    "espeak_rate", "espeak_pitch", "picture", "face", "voice", "remove_voice",
)  # fmt: skip
# What opening a character fills in, in order (FORM's fields, the revision and the previews).
OPENED = (*FORM, "revision", "portrait", "voice_player", "call_link", "video")


@dataclass(frozen=True)
class CharacterForm:
    """The form as submitted; uploads are paths gradio saved, None when nothing is uploaded."""

    id: str
    name: str
    instructions: str
    greeting: str
    lines: str  # one scripted line per line of text
    openai_voice: str
    espeak_voice: str
    espeak_rate: float
    espeak_pitch: float
    picture: str | None
    face: int | None  # index into the picture's detected faces; None or -1: its centre
    voice: str | None
    remove_voice: bool

    @classmethod
    def of(cls, *fields: Any) -> CharacterForm:
        """From the inputs in FORM order; the page sends None for a text box it has not
        filled yet."""
        form = cls(*fields)
        texts = ("id", "name", "instructions", "greeting", "lines", "espeak_voice")
        blanks: dict[str, Any] = {key: getattr(form, key) or "" for key in texts}
        return replace(form, **blanks)


def call_link(call_path: str, kind: str, ident: str, name: str) -> str:
    """The "start call" button: the call page, in a new tab."""
    if not ident:
        return f"<em>Save the {kind} to call it.</em>"
    url = html.escape(f"{call_path}?{kind}={ident}")
    return (
        f'<a class="start-call" href="{url}" target="_blank" rel="noopener">'
        f"Start a call with {html.escape(name)}</a>"
    )


def face_choices(faces: list[Face] | None) -> list[tuple[str, int]]:
    """The face dropdown's choices: None before any upload."""
    if faces is None:
        return [("The largest face found", 0)]
    if not faces:
        return [("No face found: the centre of the picture", -1)]
    return [(f"Face {k + 1}" + (" (largest)" if k == 0 else ""), k) for k in range(len(faces))]


class CharacterActions:
    def __init__(self, store: Store, previews: PreviewRenderer, *, call_path: str) -> None:
        self.store, self.previews, self.call_path = store, previews, call_path

    def choices(self) -> list[tuple[str, str]]:
        return [("New character", NEW)] + [
            (f"{self.store.character(i).persona.name} ({i})", i) for i in self.store.characters()
        ]

    def picker(self, value: str = NEW) -> dict[str, Any]:
        return gr.update(choices=self.choices(), value=value)

    def start(self, request: gr.Request | None = None) -> tuple:
        """A page's first view: the picker as the library is now, and the character its
        address names (?character=ID) or an empty form."""
        ident = asked(request, "character", self.store.characters())
        return (self.picker(ident), *self.open(ident))

    @user_errors
    def open(self, ident: str) -> tuple:
        """The form filled from the stored character (empty for NEW); values in OPENED order."""
        if ident == NEW:
            blank = Persona(name="New character", instructions="")
            values = _persona_values(blank) | {"id": "", "name": ""}
            return self._opened(values, 0, None, None, "")
        character = self.store.character(ident)
        voice = None
        if character.voice is not None:
            stored = CharacterDraft.of(character).voice
            voice = None if stored is None else _playable(stored)
        picture = draw_faces(character.picture(), [character.face_box], ["face"])
        values = _persona_values(character.persona) | {"id": ident}
        return self._opened(values, character.revision, picture, voice, character.persona.name)

    def _opened(
        self, values: dict[str, Any], revision: int, portrait: Any, voice: Any, name: str
    ) -> tuple[Any, ...]:
        ident = values["id"]
        values |= {
            "id": gr.update(value=ident, interactive=not ident),  # an id names files: fixed
            "picture": None,
            "face": gr.update(choices=face_choices(None), value=0),
            "voice": None,
            "remove_voice": False,
            "revision": revision,
            "portrait": portrait,
            "voice_player": voice,
            "call_link": call_link(self.call_path, "character", ident, name),
            "video": None,
        }
        return tuple(values[key] for key in OPENED)

    def inspect_upload(self, picture: str | None) -> tuple:
        """A new upload: inspect_picture with its largest face chosen."""
        return self.inspect_picture(picture, None)

    @user_errors
    def inspect_picture(self, picture: str | None, face: int | None) -> tuple:
        """An upload's detected faces drawn on it, the face choices and the crop it gives."""
        if picture is None:
            return None, gr.update(choices=face_choices(None), value=0), None
        image = load_image(Path(picture))
        faces = detect_faces(image)
        if not faces:
            gr.Warning("No face was found in the picture: its centre will be used.")
        h, w = image.shape[:2]
        boxes = [(c / w, r / h, (c + s) / w, (r + s) / h) for r, c, s in faces]
        marked = draw_faces(image, boxes, [f"Face {k + 1}" for k in range(len(faces))])
        picked = _pick(faces, face)
        chosen = faces.index(picked) if picked is not None else -1
        crop = crop_portrait(image, picked)
        portrait = draw_faces(crop.image, crop.face_boxes, ["face"])
        return marked, gr.update(choices=face_choices(faces), value=chosen), portrait

    @user_errors
    def inspect_voice(self, voice: str | None) -> tuple[int, np.ndarray] | None:
        """The voice sample as it would be stored (resampled), for listening."""
        if voice is None:
            return None
        return _playable(_voice_sample(voice))

    @user_errors
    def save(self, revision: float | None, *fields: Any) -> tuple:
        """Create or update; returns the picker and the reopened form (OPENED order)."""
        form = CharacterForm.of(*fields)
        draft = self._draft(form)
        # revision 0: a form opened as new (with an id of its own choosing, or none)
        saved = self.store.save_character(
            draft, ident=form.id.strip() or None, revision=int(revision or 0) or None
        )
        gr.Info(f"Saved {saved.persona.name} ({saved.id}, revision {saved.revision}).")
        return (self.picker(saved.id), *self.open(saved.id))

    @user_errors
    def delete(self, ident: str, revision: float | None) -> tuple:
        if not ident:
            raise ValueError("choose a saved character to delete")
        self.store.delete_character(ident, revision=int(revision or 0))
        gr.Info(f"Deleted {ident}.")
        return (self.picker(NEW), *self.open(NEW))

    @user_errors
    async def preview(
        self,
        speech: str,
        request: gr.Request | None,
        *fields: Any,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> str:
        """An mp4 of the character as the form has it (saved or not) saying its greeting in
        its espeak voice, or its voice sample; at most the previews' length, after the
        previews that came first (`request`: whose page asks; gradio passes it)."""
        form = CharacterForm.of(*fields)
        portrait, turn = await asyncio.to_thread(self._preview_turn, speech, form)
        progress(0, desc="Rendering")
        path = await self.previews.render(
            preview_owner(request),
            portrait.image,
            portrait.face_boxes,
            [turn],
            **progress_reports(progress),
        )
        return str(path)

    def _preview_turn(self, speech: str, form: CharacterForm) -> tuple[FaceCrop, Turn]:
        draft = self._draft(form)
        if speech == SPEAK_SAMPLE:
            if draft.voice is None:
                raise ValueError("there is no voice sample: upload one, or preview the greeting")
            return draft.portrait, Turn(0, draft.voice, VOICE_RATE)
        return draft.portrait, say(draft.persona, draft.persona.greeting)

    def _draft(self, form: CharacterForm) -> CharacterDraft:
        """The character the form describes: new uploads, else what is stored."""
        ident = form.id.strip()
        stored = None
        if ident and check_id("character", ident) in self.store.characters():
            stored = CharacterDraft.of(self.store.character(ident))
        base = stored.persona.to_dict() if stored else {}
        lines = [line.strip() for line in form.lines.splitlines() if line.strip()]
        if shutil.which("espeak-ng"):
            check_voice("espeak-ng", form.espeak_voice)
        persona = Persona.from_dict(
            base
            | {
                "name": form.name.strip(),
                "instructions": form.instructions.strip(),
                "greeting": form.greeting.strip(),
                "lines": lines,
                "openai_voice": form.openai_voice,
                "espeak_voice": form.espeak_voice.strip(),
                "espeak_rate": int(form.espeak_rate),
                "espeak_pitch": int(form.espeak_pitch),
            }
        )
        voice = stored.voice if stored else None
        if form.remove_voice:
            voice = None
        elif form.voice is not None:
            voice = _voice_sample(form.voice)
        if form.picture is not None:
            image = load_image(Path(form.picture))
            portrait = crop_portrait(image, _pick(detect_faces(image), form.face))
        elif stored is not None:
            portrait = stored.portrait
        else:
            raise ValueError("upload a picture of the character (a photo or drawing of its face)")
        return CharacterDraft(persona, portrait, voice)


def _pick(faces: list[Face], face: int | None) -> Face | None:
    """The chosen face (None: the largest); -1, or no faces: None, the picture's centre."""
    if not faces or face == -1:
        return None
    k = 0 if face is None else int(face)
    if not 0 <= k < len(faces):
        raise ValueError(f"face {k + 1} is not one of the {len(faces)} faces found; pick again")
    return faces[k]


def _voice_sample(path: str) -> np.ndarray:
    audio, rate = load_audio(Path(path), max_seconds=VOICE_MAX_SECONDS, max_bytes=VOICE_MAX_BYTES)
    return prepare_voice(audio, rate)


def _playable(voice: np.ndarray) -> tuple[int, np.ndarray]:
    """A stored voice sample as gr.Audio plays it: (rate, int16)."""
    return VOICE_RATE, (voice * 32767).round().astype(np.int16)


def _persona_values(persona: Persona) -> dict[str, Any]:
    return {
        "name": persona.name,
        "instructions": persona.instructions,
        "greeting": persona.greeting,
        "lines": "\n".join(persona.lines),
        "openai_voice": persona.openai_voice,
        "espeak_voice": persona.espeak_voice,
        "espeak_rate": persona.espeak_rate,
        "espeak_pitch": persona.espeak_pitch,
    }
