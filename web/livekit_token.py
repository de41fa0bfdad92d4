"""The LiveKit transport's server side: tokens for the call page.

The page asks POST /api/livekit/token for a character or a scene and gets a token for one new
room and one identity, valid for two minutes (the page joins at once; LiveKit refreshes the
token of a connected participant itself). The token also carries the room's configuration,
which dispatches the avatar worker (app/livekit_worker.py, by agent name) with the cast as the job's
metadata, so the worker joins that room and nothing else. The API key and secret only sign
tokens here; neither is ever sent to the browser.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from livekit import api
from pydantic import BaseModel, ConfigDict, Field

from app.casting import DEFAULT_AGENT_NAME, DEFAULT_CHARACTER, CastRequest, agent_name_from
from app.characters import CharacterLibrary, check_id
from web.errors import ApiError
from web.limits import RateLimit, check_call_rate, client_address

URL_SCHEMES = ("wss", "ws", "https", "http")  # what livekit-client connects to
CREDENTIALS = ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
CALLER_SOURCES = ["microphone"]  # all a caller may publish: its voice
TOKEN_TTL_S = 120  # how long a token may be used to join; the joined call may last longer
MAX_ID_CHARS = 64  # app.characters.ID_PATTERN's longest id


@dataclass(frozen=True)
class LiveKitSettings:
    """Where the browser connects, and what signs its tokens."""

    url: str  # the LiveKit server as the browser reaches it (wss://...)
    api_key: str
    api_secret: str
    ttl_s: int = TOKEN_TTL_S
    agent_name: str = DEFAULT_AGENT_NAME  # the workers' name (app/livekit_worker.py)

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in URL_SCHEMES:
            raise ValueError(
                f"LIVEKIT_URL {self.url!r} is not a LiveKit server URL: use wss://host "
                "(or ws://host:7880 for a local development server)"
            )
        if not self.api_key or not self.api_secret:
            raise ValueError("LiveKit needs an API key and secret to sign call tokens")
        if self.ttl_s <= 0:
            raise ValueError(f"a token's lifetime must be positive, not {self.ttl_s} s")

    def __repr__(self) -> str:  # never the secret in a log line or traceback
        return f"LiveKitSettings(url={self.url!r}, agent_name={self.agent_name!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> LiveKitSettings | None:
        """From LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET (and LIVEKIT_AGENT_NAME, as
        the worker reads it); None without LIVEKIT_URL: the local transport then.

        Raises:
            ValueError: LIVEKIT_URL is set but the key or secret is not, naming them.
        """
        url = env.get("LIVEKIT_URL", "").strip()
        if not url:
            return None
        missing = [name for name in CREDENTIALS if not env.get(name)]
        if missing:
            raise ValueError(
                f"LIVEKIT_URL is set, but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not: set "
                f"{'it' if len(missing) == 1 else 'them'} to an API key and secret of the "
                f"LiveKit server at {url} (or unset LIVEKIT_URL to call without LiveKit)"
            )
        return cls(
            url=url,
            api_key=env["LIVEKIT_API_KEY"],
            api_secret=env["LIVEKIT_API_SECRET"],
            agent_name=agent_name_from(env),
        )


class TokenRequest(BaseModel):
    """POST /api/livekit/token: whom the call is with; neither: the default character."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ada
    character: str | None = Field(None, max_length=MAX_ID_CHARS)
    scene: str | None = Field(None, max_length=MAX_ID_CHARS)


class TokenResponse(BaseModel):
    url: str  # the LiveKit server to connect to
    token: str  # a JWT for `room` as `identity`
    room: str
    identity: str


def livekit_router(
    settings: LiveKitSettings, *, library: CharacterLibrary, call_starts: RateLimit | None = None
) -> APIRouter:
    """POST /api/livekit/token: 200 {url, token, room, identity}; 404 for an unknown
    character or scene, 400 for an invalid request and 429 when the address has started its
    share of calls (`call_starts`: each token dispatches a worker), each with a `detail` that
    says why (web/errors.py)."""
    router = APIRouter()

    @router.post("/api/livekit/token")
    def token(body: TokenRequest, request: Request, response: Response) -> TokenResponse:
        # sync: FastAPI runs it in a thread, off the event loop, as it reads the library
        if call_starts is not None:
            check_call_rate(call_starts, client_address(request.scope))
        kind, ident = _cast(body, library)
        room, identity = f"avatar-{secrets.token_hex(8)}", f"caller-{secrets.token_hex(8)}"
        jwt = mint_token(settings, room=room, identity=identity, metadata={kind: ident})
        response.headers["Cache-Control"] = "no-store"  # a credential
        return TokenResponse(url=settings.url, token=jwt, room=room, identity=identity)

    return router


def mint_token(settings: LiveKitSettings, *, room: str, identity: str, metadata: dict) -> str:
    """A token to join `room` as `identity`, publish a microphone and subscribe; joining
    creates the room, which dispatches the avatar worker with `metadata` (JSON) as its job's."""
    grants = api.VideoGrants(
        room_join=True,
        room=room,
        can_subscribe=True,
        can_publish=True,
        can_publish_sources=CALLER_SOURCES,
        can_publish_data=False,
    )
    dispatch = api.RoomAgentDispatch(agent_name=settings.agent_name, metadata=json.dumps(metadata))
    return (
        api.AccessToken(settings.api_key, settings.api_secret)
        .with_identity(identity)
        .with_grants(grants)
        .with_room_config(api.RoomConfiguration(agents=[dispatch]))
        .with_ttl(timedelta(seconds=settings.ttl_s))
        .to_jwt()
    )


def _cast(body: TokenRequest, library: CharacterLibrary) -> tuple[str, str]:
    """("character" | "scene", id) of a known one; HTTP errors that say what was wrong."""
    try:
        request = CastRequest(character=body.character, scene=body.scene)
        kind, ident = (
            ("scene", request.scene)
            if request.scene is not None
            else ("character", request.character or DEFAULT_CHARACTER)
        )
        check_id(kind, ident)
    except ValueError as err:
        raise ApiError(400, "bad_request", str(err)) from None
    known = library.ids(kind)
    if ident not in known:
        raise ApiError(
            404, "not_found", f"no {kind} {ident!r}; known {kind}s: {', '.join(known) or 'none'}"
        )
    return kind, ident
