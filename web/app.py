"""The one web app: the call page and its API, the static files, and the creator console.
`avatar serve` (app/serve.py) builds it and runs it with uvicorn.

Its API answers refusals in one shape (web/errors.py), caps request bodies before reading
them and limits call starts per address (web/limits.py); with a login, everything but the
console's own login asks for it (web/access.py). docs/WEB.md, "Exposure", lists it all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.routing import Mount

from app.avatar import AvatarEngine
from app.casting import CastRequest
from app.characters import CharacterLibrary
from app.drafts import UPLOAD_MAX_BYTES
from app.local_call import CallLimits, LocalCalls, OfferError
from app.local_call.offer import MAX_SDP_CHARS
from web.access import ConsoleSession, LoginGate
from web.errors import ApiError, install_error_handlers
from web.gallery import cast_card, gallery_router
from web.limits import BodyLimit, RateLimit, WebLimits, check_call_rate, client_address

if TYPE_CHECKING:
    import gradio as gr

    from web.livekit_token import LiveKitSettings

T = TypeVar("T")

STATIC = Path(__file__).resolve().parent / "static"
CONSOLE_PATH = "/console"
CONSOLE_LOGIN = (f"{CONSOLE_PATH}/login", f"{CONSOLE_PATH}/login/")
MAX_ID_CHARS = 64  # app.characters.ID_PATTERN's longest id: nothing longer is read or echoed
MAX_KIND_CHARS = 16  # "offer", "answer", ...


class CallOffer(BaseModel):
    """POST /api/call/offer: the browser's offer and whom it calls (a character or a scene)."""

    sdp: str = Field(max_length=MAX_SDP_CHARS)
    type: str = Field(max_length=MAX_KIND_CHARS)
    character: str | None = Field(None, max_length=MAX_ID_CHARS)
    scene: str | None = Field(None, max_length=MAX_ID_CHARS)


def create_app(
    *,
    engine_factory: Callable[[], AvatarEngine],
    library: CharacterLibrary,
    sessions: int = 1,
    console: gr.Blocks | None = None,
    livekit: LiveKitSettings | None = None,
    login: tuple[str, str] | None = None,
    call_limits: CallLimits | None = None,
    web_limits: WebLimits | None = None,
) -> FastAPI:
    """Args:
    engine_factory: builds one engine per concurrent call (blocking; on first need).
    sessions: local calls at once; more get HTTP 503.
    console: the Gradio console, mounted at /console.
    livekit: LiveKit settings: the page then calls through LiveKit (POST /api/livekit/token).
    login: (username, password) the console and, but for the console's login page,
        everything else asks for; None: nothing does (loopback only).
    call_limits: how long a local call may hold its slot; how many one address may hold.
    web_limits: calls started per address and minute, failed logins, the body cap.
    """
    web_limits = web_limits or WebLimits()
    calls = LocalCalls(
        engine_factory=engine_factory, library=library, sessions=sessions, limits=call_limits
    )
    call_starts = RateLimit(count=web_limits.calls_per_minute, window_s=web_limits.window_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await calls.aclose()

    app = FastAPI(title="Talking avatar", lifespan=lifespan)
    app.state.calls = calls
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.include_router(
        gallery_router(library, console_path=CONSOLE_PATH if console is not None else None)
    )

    @app.get("/call", include_in_schema=False)
    async def call_page() -> FileResponse:
        return FileResponse(STATIC / "call.html")

    @app.get("/api/config")
    async def config() -> dict[str, str]:
        """Which transport the call page uses."""
        return {"transport": "livekit" if livekit is not None else "local"}

    @app.get("/api/cast")
    async def cast(
        character: str | None = Query(None, max_length=MAX_ID_CHARS),
        scene: str | None = Query(None, max_length=MAX_ID_CHARS),
    ) -> dict[str, Any]:
        """Who a call would be with: the page shows their names and picture before it asks
        for the microphone, and the speaker's name in the transcript."""
        request = _cast_request(character, scene)
        return await _lookup(asyncio.to_thread(cast_card, library, request))

    @app.post("/api/call/offer")
    async def call_offer(body: CallOffer, http: Request) -> dict[str, str]:
        client = client_address(http.scope)
        check_call_rate(call_starts, client)
        request = _cast_request(body.character, body.scene)
        answer = await _lookup(calls.offer(body.sdp, body.type, request, client=client))
        return {"sdp": answer.sdp, "type": answer.type}

    if livekit is not None:
        from web.livekit_token import livekit_router

        app.include_router(livekit_router(livekit, library=library, call_starts=call_starts))
    console_session: ConsoleSession | None = None
    if console is not None:
        import gradio as gr

        app = gr.mount_gradio_app(
            app, console, path=CONSOLE_PATH, auth=login, max_file_size=UPLOAD_MAX_BYTES
        )
        # Only in an app that launch() started does Gradio refuse a request's file that did not
        # come through its upload route; a mounted one keeps has_launched False, so it would
        # copy any path a client names into its cache and hand the copy to the actions.
        console.has_launched = True
        console_session = _console_session(app)
    app.add_middleware(BodyLimit, max_bytes=web_limits.max_body_bytes, exempt=(CONSOLE_PATH,))
    if login is not None:  # added last: the outermost, so nothing is read before it passes
        app.add_middleware(
            LoginGate,
            login=login,
            failures=RateLimit(count=web_limits.login_failures, window_s=web_limits.window_s),
            public=(CONSOLE_PATH,),
            login_paths=CONSOLE_LOGIN,
            login_page=f"{CONSOLE_PATH}/",
            console_session=console_session,
        )
    return app


def _console_session(app: FastAPI) -> ConsoleSession:
    """The user logged in to the mounted console whose session cookie a request carries.
    Gradio keeps its sessions in the mounted app (`tokens`, cookie `access-token-<id>`)."""
    console_app: Any  # gradio's App, which keeps the sessions
    (console_app,) = (r.app for r in app.routes if isinstance(r, Mount) and r.path == CONSOLE_PATH)
    cookie_id = console_app.cookie_id
    names = (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}")

    def user(cookies: Mapping[str, str]) -> str | None:
        tokens = [cookies[name] for name in names if name in cookies]
        return next((console_app.tokens[t] for t in tokens if t in console_app.tokens), None)

    return user


def _cast_request(character: str | None, scene: str | None) -> CastRequest:
    try:
        return CastRequest(character=character or None, scene=scene or None)
    except ValueError as err:
        raise ApiError(400, "bad_request", str(err)) from None


async def _lookup(awaitable: Awaitable[T]) -> T:
    """Unknown ids are 404 and invalid ones 400, with the library's message."""
    try:
        return await awaitable
    except OfferError:
        raise
    except LookupError as err:
        raise ApiError(404, "not_found", str(err).strip("'\"")) from None
    except ValueError as err:
        raise ApiError(400, "bad_request", str(err)) from None
