"""The console's layout: two tabs (characters, scenes) wired to their actions. Nothing here
decides anything; the actions (characters.py, scenes.py) call the store and the renderer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import gradio as gr

from app.avatar import AvatarEngine
from app.drafts import (
    GREETING_MAX_CHARS,
    INSTRUCTIONS_MAX_CHARS,
    LINE_MAX_CHARS,
    LINES_MAX,
    NAME_MAX_CHARS,
)
from app.store import Store
from llm_bridge.persona import OPENAI_VOICES
from web.console import address, characters, scenes
from web.console.characters import CharacterActions
from web.console.preview import PREVIEW_MAX_SECONDS, PreviewRenderer
from web.console.scenes import SceneActions

CALL_LINK_CSS = """
.start-call { display: inline-block; padding: 0.6em 1.2em; border-radius: 8px;
  background: var(--button-primary-background-fill); color: var(--button-primary-text-color);
  font-weight: 600; text-decoration: none; }
"""


# Choices change as the library and uploads do; the page refreshes them, but an API client's
# session only has the ones the console was built with. The actions check every value.
class _OpenChoices(TypedDict):
    allow_custom_value: bool


OPEN_CHOICES: _OpenChoices = {"allow_custom_value": True}


# Previews wait in the renderer's own fair queue (web/console/preview.py), which also stops a
# cancelled one; gradio's queue would hold them behind each other without either.
class _PreviewEvent(TypedDict):
    concurrency_limit: None


PREVIEW_EVENT: _PreviewEvent = {"concurrency_limit": None}
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"]
AUDIO_TYPES = [".wav", ".flac", ".ogg", ".mp3", ".m4a", ".webm"]


def build_console(
    store: Store,
    *,
    render_engine: Callable[[], AvatarEngine] | None,
    call_path: str = "/call",
    preview_dir: Path | None = None,
) -> gr.Blocks:
    """The creator console. Mount it with gradio.mount_gradio_app (web/app.py does), or
    launch it on its own.

    Args:
        store: the library it edits.
        render_engine: gives the engine previews render on (called once, on the first
            preview); None turns previews off.
        call_path: where the call page is served; "Start call" links to
            `{call_path}?character=ID` or `?scene=ID`.
        preview_dir: where the previews' folder goes (default: the temp directory).
    """
    previews = PreviewRenderer(render_engine, temp_dir=preview_dir)
    people = CharacterActions(store, previews, call_path=call_path)
    groups = SceneActions(store, previews, call_path=call_path)
    # gradio keeps uploads and previews in its cache: hourly, drop those older than a day
    console = gr.Blocks(
        title="Talking avatar · console", analytics_enabled=False, delete_cache=(3600, 86400)
    )
    with console:
        gr.Markdown("# Talking avatar console")
        with gr.Tabs() as tabs:
            with gr.Tab("Characters", id="characters"):
                character_picker, character_form = _character_tab(people, previews.available)
            with gr.Tab("Scenes", id="scenes") as scene_tab:
                scene_picker, scene_form, members = _scene_tab(groups, previews.available)
        scene_tab.select(groups.members, None, members, api_visibility="private")
        # a page opens on the library as it is now (other tabs edit it), on empty forms or
        # on the one its address names (?character=ID, ?scene=ID: the gallery's Edit links)
        console.load(address.tab, None, tabs, api_visibility="private")
        console.load(people.start, None, [character_picker, *character_form])
        console.load(groups.start, None, [scene_picker, *scene_form, members])
    return console


def _picker(choices: list, new: str, label: str) -> tuple[gr.Dropdown, gr.Button]:
    """The dropdown that opens an item (or a new one) and its delete button."""
    with gr.Row():
        picker = gr.Dropdown(choices, value=new, label=label, scale=3, **OPEN_CHOICES)
        delete = gr.Button("Delete", variant="stop", scale=1)
    return picker, delete


def _name_and_id(f: dict[str, Any]) -> None:
    with gr.Row():
        f["name"] = gr.Textbox(label="Name", max_length=NAME_MAX_CHARS)
        f["id"] = gr.Textbox(label="Id", info="for links and files; made from the name when empty")


def _character_tab(actions: CharacterActions, can_render: bool) -> tuple[gr.Dropdown, list]:
    """Returns the picker and the components opening a character fills (OPENED order)."""
    f: dict[str, Any] = {}
    picker, delete = _picker(actions.choices(), address.NEW, "Character")
    with gr.Row():
        with gr.Column(scale=3):
            _name_and_id(f)
            f["instructions"] = gr.Textbox(
                label="Persona instructions (the LLM's prompt)",
                lines=4,
                max_length=INSTRUCTIONS_MAX_CHARS,
            )
            f["greeting"] = gr.Textbox(label="Greeting", max_length=GREETING_MAX_CHARS)
            f["lines"] = gr.Textbox(
                label=f"Scripted lines for the offline voice, one per line (up to {LINES_MAX}, "
                f"{LINE_MAX_CHARS} characters each)",
                lines=4,
                max_length=LINES_MAX * (LINE_MAX_CHARS + 1),
            )
            with gr.Row():
                f["openai_voice"] = gr.Dropdown(list(OPENAI_VOICES), label="OpenAI voice")
                f["espeak_voice"] = gr.Dropdown(
                    list(characters.ESPEAK_VOICES),
                    label="Offline voice (espeak-ng)",
                    allow_custom_value=True,
                )
            with gr.Row():
                f["espeak_rate"] = gr.Slider(80, 450, step=5, label="Offline voice: words/min")
                f["espeak_pitch"] = gr.Slider(0, 99, step=1, label="Offline voice: pitch")
            with gr.Row():
                f["voice"] = gr.File(label="Voice sample (up to 30 s)", file_types=AUDIO_TYPES)
                f["voice_player"] = gr.Audio(label="Stored voice sample", interactive=False)
            f["remove_voice"] = gr.Checkbox(label="Remove the voice sample")
        with gr.Column(scale=2):
            f["picture"] = gr.File(
                label="Picture", file_types=IMAGE_TYPES, elem_id="character-picture"
            )
            f["face"] = gr.Dropdown(
                label="Face", choices=characters.face_choices(None), value=0, **OPEN_CHOICES
            )
            uploaded = gr.Image(label="Faces found", interactive=False, elem_id="faces-found")
            f["portrait"] = gr.Image(label="Portrait (the engine's frame)", interactive=False)
    revision = gr.Number(visible=False, precision=0, value=0)
    f["revision"] = revision
    save = gr.Button("Save", variant="primary")
    with gr.Row():
        speech = gr.Radio(
            [characters.SPEAK_GREETING, characters.SPEAK_SAMPLE],
            value=characters.SPEAK_GREETING,
            label="The preview speaks",
        )
        render = gr.Button(
            f"Render preview (up to {PREVIEW_MAX_SECONDS:g} s)", interactive=can_render
        )
        stop = gr.Button("Stop preview", interactive=can_render)
        f["call_link"] = gr.HTML(
            characters.call_link("", "character", "", ""), css_template=CALL_LINK_CSS
        )
    f["video"] = gr.Video(label="Preview", interactive=False)

    form = [f[key] for key in characters.FORM]
    opened = [f[key] for key in characters.OPENED]
    picker.input(actions.open, picker, opened, api_name="open_character")
    f["picture"].change(
        actions.inspect_upload,
        f["picture"],
        [uploaded, f["face"], f["portrait"]],
        api_visibility="private",
    )
    f["face"].input(
        actions.inspect_picture,
        [f["picture"], f["face"]],
        [uploaded, f["face"], f["portrait"]],
        api_name="inspect_picture",
    )
    f["voice"].change(
        actions.inspect_voice, f["voice"], f["voice_player"], api_name="inspect_voice"
    )
    save.click(actions.save, [revision, *form], [picker, *opened], api_name="save_character")
    delete.click(
        actions.delete, [f["id"], revision], [picker, *opened], api_name="delete_character"
    )
    rendering = render.click(
        actions.preview, [speech, *form], f["video"], api_name="preview_character", **PREVIEW_EVENT
    )
    stop.click(None, cancels=[rendering], api_visibility="private")
    return picker, opened


def _scene_tab(actions: SceneActions, can_render: bool) -> tuple[gr.Dropdown, list, gr.Dropdown]:
    """Returns the picker, the components opening a scene fills, and the members' dropdown."""
    f: dict[str, Any] = {}
    picker, delete = _picker(actions.choices(), address.NEW, "Scene")
    with gr.Row():
        with gr.Column(scale=3):
            _name_and_id(f)
            f["members"] = gr.Dropdown(
                label="Characters (2-4, in speaking order)",
                multiselect=True,
                max_choices=scenes.SLOTS,
                choices=actions.member_choices(),
                **OPEN_CHOICES,
            )
            f["layout"] = gr.Radio(
                [scenes.SIDE_BY_SIDE, scenes.GROUP_PHOTO], value=scenes.SIDE_BY_SIDE, label="Layout"
            )
            f["photo"] = gr.File(label="Group photo", file_types=IMAGE_TYPES, visible=False)
            for k in range(scenes.SLOTS):
                f[f"face_{k}"] = gr.Dropdown(
                    label="Face", visible=False, choices=[], **OPEN_CHOICES
                )
        with gr.Column(scale=2):
            f["picture"] = gr.Image(label="The scene's frame", interactive=False)
    revision = gr.Number(visible=False, precision=0, value=0)
    f["revision"] = revision
    save = gr.Button("Save", variant="primary")
    with gr.Row():
        render = gr.Button(
            f"Render preview (each says its greeting; up to {PREVIEW_MAX_SECONDS:g} s)",
            interactive=can_render,
        )
        stop = gr.Button("Stop preview", interactive=can_render)
        f["call_link"] = gr.HTML(
            characters.call_link("", "scene", "", ""), css_template=CALL_LINK_CSS
        )
    f["video"] = gr.Video(label="Preview", interactive=False)

    form = [f[key] for key in scenes.FORM]
    opened = [f[key] for key in scenes.OPENED]
    slots = [f[f"face_{k}"] for k in range(scenes.SLOTS)]
    picker.input(actions.open, picker, opened, api_name="open_scene")
    f["layout"].input(actions.photo_box, f["layout"], f["photo"], api_visibility="private")
    triggers = [f["members"].input, f["layout"].input, f["photo"].change]
    for trigger in triggers + [slot.input for slot in slots]:
        trigger(actions.inspect, form, [f["picture"], *slots], api_visibility="private")
    save.click(actions.save, [revision, *form], [picker, *opened], api_name="save_scene")
    delete.click(actions.delete, [f["id"], revision], [picker, *opened], api_name="delete_scene")
    rendering = render.click(
        actions.preview, form, f["video"], api_name="preview_scene", **PREVIEW_EVENT
    )
    stop.click(None, cancels=[rendering], api_visibility="private")
    return picker, opened, f["members"]
