"""The one web app: the call page and its API, the static files, and the creator console.
`avatar serve` (app/serve.py) builds it and runs it with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from app.avatar import AvatarEngine
from app.characters import CharacterLibrary
from app.conversation import CastRequest
from app.local_call import CallsBusy, LocalCalls, OfferError
from app.local_call.offer import MAX_SDP_CHARS

if TYPE_CHECKING:
    import gradio as gr

    from web.livekit_token import LiveKitSettings

STATIC = Path(__file__).resolve().parent / "static"
CONSOLE_PATH = "/console"


class CallOffer(BaseModel):
    """POST /api/call/offer: the browser's offer and whom it calls (a character or a scene)."""

    sdp: str = Field(max_length=MAX_SDP_CHARS)
    type: str
    character: str | None = None
    scene: str | None = None


def create_app(
    *,
    engine_factory: Callable[[], AvatarEngine],
    library: CharacterLibrary,
    sessions: int = 1,
    console: gr.Blocks | None = None,
    livekit: LiveKitSettings | None = None,
    console_auth: tuple[str, str] | None = None,
) -> FastAPI:
    """Args:
    engine_factory: builds one engine per concurrent call (blocking; on first need).
    sessions: local calls at once; more get HTTP 503.
    console: the Gradio console, mounted at /console.
    livekit: LiveKit settings: the page then calls through LiveKit (POST /api/livekit/token).
    console_auth: (username, password) the console asks for.
    """
    calls = LocalCalls(engine_factory=engine_factory, library=library, sessions=sessions)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await calls.aclose()

    app = FastAPI(title="Talking avatar", lifespan=lifespan)
    app.state.calls = calls
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{CONSOLE_PATH}/" if console is not None else "/characters")

    @app.get("/characters", response_class=HTMLResponse)
    async def characters() -> str:
        return await asyncio.to_thread(_index_page, library)

    @app.get("/call", include_in_schema=False)
    async def call_page() -> FileResponse:
        return FileResponse(STATIC / "call.html")

    @app.get("/api/config")
    async def config() -> dict[str, str]:
        """Which transport the call page uses."""
        return {"transport": "livekit" if livekit is not None else "local"}

    @app.get("/api/cast")
    async def cast(character: str | None = None, scene: str | None = None) -> dict[str, Any]:
        """Who a call would be with: the page shows their names before it asks for the mic."""
        request = _cast_request(character, scene)
        casting = await _lookup(asyncio.to_thread(calls.casting, request))
        return {"characters": [p.name for p in casting.personas]}

    @app.post("/api/call/offer")
    async def call_offer(body: CallOffer) -> dict[str, str]:
        request = _cast_request(body.character, body.scene)
        answer = await _lookup(calls.offer(body.sdp, body.type, request))
        return {"sdp": answer.sdp, "type": answer.type}

    @app.exception_handler(CallsBusy)
    async def busy(_: Request, err: CallsBusy) -> JSONResponse:
        return JSONResponse({"error": "busy", "detail": str(err)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in err.errors()
        )
        return JSONResponse({"error": "bad_request", "detail": problems}, status_code=400)

    @app.exception_handler(OfferError)
    async def bad_offer(_: Request, err: OfferError) -> JSONResponse:
        return JSONResponse({"error": "bad_offer", "detail": str(err)}, status_code=400)

    if livekit is not None:
        from web.livekit_token import livekit_router

        app.include_router(livekit_router(livekit, library=library))
    if console is not None:
        import gradio as gr

        app = gr.mount_gradio_app(app, console, path=CONSOLE_PATH, auth=console_auth)
        # Only in an app that launch() started does Gradio refuse a request's file that did not
        # come through its upload route; a mounted one keeps has_launched False, so it would
        # copy any path a client names into its cache and hand the copy to the actions.
        console.has_launched = True
    return app


def _cast_request(character: str | None, scene: str | None) -> CastRequest:
    try:
        return CastRequest(character=character or None, scene=scene or None)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None


async def _lookup(awaitable: Any) -> Any:
    """Unknown ids are 404 and invalid ones 400, with the library's message."""
    try:
        return await awaitable
    except OfferError:
        raise
    except LookupError as err:
        raise HTTPException(404, str(err).strip("'\"")) from None
    except ValueError as err:
        raise HTTPException(400, str(err)) from None


def _index_page(library: CharacterLibrary) -> str:
    """A plain list of the characters and scenes, each linking to its call."""
    items = []
    for kind in ("character", "scene"):
        for ident in library.ids(kind):
            entry = library.character(ident) if kind == "character" else library.scene(ident)
            name = entry.persona.name if kind == "character" else entry.name
            link = f"/call?{kind}={html.escape(ident)}"
            items.append(f'<li><a href="{link}">{html.escape(name)}</a> <small>{kind}</small></li>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Talking avatar</title>'
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/call.css">'
        '</head><body class="index">'
        f"<main><h1>Call a character</h1><ul>{''.join(items)}</ul></main></body></html>"
    )
