"""What the console's address asks to open: `/console/?character=ID` or `?scene=ID` (the
gallery's Edit links) opens that one's tab and form."""

from __future__ import annotations

from collections.abc import Sequence

import gradio as gr

NEW = ""  # the pickers' value for one not saved yet


def asked(request: gr.Request | None, kind: str, known: Sequence[str]) -> str:
    """The `kind` id the address names, if the library has it; else NEW (an empty form)."""
    if request is None:
        return NEW
    ident = request.query_params.get(kind, NEW)
    return ident if ident in known else NEW


def tab(request: gr.Request | None) -> gr.Tabs:
    """The tab the address asks for: Scenes for ?scene=, else Characters."""
    wants_scene = request is not None and "scene" in request.query_params
    return gr.Tabs(selected="scenes" if wants_scene else "characters")
