"""The front door: `/` is a gallery of the library's characters and scenes to call (the page,
web/static/index.html, reads GET /api/library), and their pictures (GET /api/pictures/...),
which the gallery's cards and the call page show before a call."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from PIL import Image

from app.casting import DEFAULT_CHARACTER, CastRequest
from app.characters import CharacterLibrary
from web.errors import ApiError

STATIC = Path(__file__).resolve().parent / "static"
MAX_ID_CHARS = 64  # app.characters.ID_PATTERN's longest id
Kind = Literal["character", "scene"]
# pictures carry their revision in the URL (?v=), so a saved change is a new address
NO_STALE = {"Cache-Control": "no-cache"}


def picture_url(kind: str, ident: str, revision: int) -> str:
    return f"/api/pictures/{kind}/{ident}?v={revision}"


def gallery_router(library: CharacterLibrary, *, console_path: str | None) -> APIRouter:
    """Args:
    console_path: where the creator console is mounted (its Edit and New links); None: no
        console, no links.
    """
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def gallery() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=NO_STALE)

    @router.get("/api/library")
    async def listing(response: Response) -> dict[str, Any]:
        """The characters and scenes to call, with their pictures and links; read anew on
        every request, so what the console saves shows at the gallery's next look."""
        response.headers.update(NO_STALE)
        return await asyncio.to_thread(_listing, library, console_path)

    @router.get("/api/pictures/{kind}/{ident}", include_in_schema=False)
    async def picture(kind: Kind, ident: str = PathParam(max_length=MAX_ID_CHARS)) -> Response:
        """A character's portrait (its stored file) or a scene's picture (PNG)."""
        try:
            return await asyncio.to_thread(_picture, library, kind, ident)
        except LookupError as err:
            raise ApiError(404, "not_found", str(err).strip("'\"")) from None
        except ValueError as err:
            raise ApiError(400, "bad_request", str(err)) from None

    return router


def cast_card(library: CharacterLibrary, request: CastRequest) -> dict[str, Any]:
    """Who a call would be with (blocking: reads the library): the title, the characters'
    names by speaker index and the picture the call page shows before the call.
    LookupError when the library has no such character or scene."""
    if request.scene is not None:
        scene = library.scene(request.scene)
        names = [c.persona.name for c in scene.characters]
        return {
            "name": scene.name,
            "characters": names,
            "picture": picture_url("scene", scene.id, scene.revision),
        }
    character = library.character(request.character or DEFAULT_CHARACTER)
    return {
        "name": character.persona.name,
        "characters": [character.persona.name],
        "picture": picture_url("character", character.id, character.revision),
    }


def _listing(library: CharacterLibrary, console_path: str | None) -> dict[str, Any]:
    def edit(kind: str, ident: str) -> str | None:
        return None if console_path is None else f"{console_path}/?{kind}={ident}"

    characters = []
    for ident in library.ids("character"):
        character = library.character(ident)
        characters.append(
            {
                "id": ident,
                "name": character.persona.name,
                "picture": picture_url("character", ident, character.revision),
                "call": f"/call?character={ident}",
                "edit": edit("character", ident),
            }
        )
    scenes = []
    for ident in library.ids("scene"):
        scene = library.scene(ident)
        scenes.append(
            {
                "id": ident,
                "name": scene.name,
                "characters": [c.persona.name for c in scene.characters],
                "picture": picture_url("scene", ident, scene.revision),
                "call": f"/call?scene={ident}",
                "edit": edit("scene", ident),
            }
        )
    new = None if console_path is None else f"{console_path}/"
    return {"characters": characters, "scenes": scenes, "new": new}


def _picture(library: CharacterLibrary, kind: Kind, ident: str) -> Response:
    if kind == "character":
        return FileResponse(library.character(ident).image, headers=NO_STALE)
    out = io.BytesIO()
    Image.fromarray(library.scene(ident).picture).save(out, format="PNG")
    return Response(out.getvalue(), media_type="image/png", headers=NO_STALE)
