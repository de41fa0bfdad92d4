"""POST /api/livekit/token: one fresh room and identity per call, a short TTL, a caller's
grants, the avatar worker dispatched with the cast; refusals that say why; no secret leaves."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from livekit.api import TokenVerifier

from tests.web.conftest import LIBRARY
from web.errors import install_error_handlers
from web.livekit_token import TOKEN_TTL_S, LiveKitSettings, livekit_router

KEY, SECRET = "APIkey4test", "secret-for-tests-only-0123456789abcdef"
SETTINGS = LiveKitSettings(
    url="wss://livekit.example", api_key=KEY, api_secret=SECRET, ttl_s=300, agent_name="avatar-t"
)
ENV = {"LIVEKIT_URL": "wss://livekit.example", "LIVEKIT_API_KEY": KEY, "LIVEKIT_API_SECRET": SECRET}


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(livekit_router(SETTINGS, library=LIBRARY))
    return TestClient(app)


def test_a_token_admits_one_caller_to_one_new_room_and_dispatches_the_avatar(client):
    before = int(time.time())
    response = client.post("/api/livekit/token", json={"character": "bo"})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"url", "token", "room", "identity"}
    assert body["url"] == "wss://livekit.example"

    claims = TokenVerifier(KEY, SECRET).verify(body["token"])  # signed with our secret
    assert claims.identity == body["identity"]
    grants = claims.video
    assert grants.room_join and grants.room == body["room"]
    assert grants.can_subscribe and grants.can_publish_sources == ["microphone"]
    assert not grants.can_publish_data
    # nothing beyond this room: no creating, listing, administering or recording rooms
    assert not any((grants.room_create, grants.room_list, grants.room_admin, grants.room_record))
    assert not grants.agent and not grants.hidden
    (dispatch,) = claims.room_config.agents
    assert dispatch.agent_name == "avatar-t"
    assert json.loads(dispatch.metadata) == {"character": "bo"}

    raw = jwt.decode(body["token"], SECRET, algorithms=["HS256"], issuer=KEY)
    assert before - 1 <= raw["nbf"] <= before + 2
    assert raw["exp"] - raw["nbf"] == SETTINGS.ttl_s


def test_each_call_gets_its_own_room_and_identity(client):
    first, second = (client.post("/api/livekit/token", json={}).json() for _ in range(2))
    assert first["room"] != second["room"] and first["identity"] != second["identity"]
    claims = TokenVerifier(KEY, SECRET).verify(first["token"])
    assert json.loads(claims.room_config.agents[0].metadata) == {"character": "ada"}  # default


def test_a_scene_is_dispatched_as_a_scene(client):
    body = client.post("/api/livekit/token", json={"scene": "duo"}).json()
    claims = TokenVerifier(KEY, SECRET).verify(body["token"])
    assert json.loads(claims.room_config.agents[0].metadata) == {"scene": "duo"}


@pytest.mark.parametrize(
    ("who", "status", "why"),
    [
        ({"character": "nobody"}, 404, "no character 'nobody'; known characters: ada,"),
        ({"scene": "ada"}, 404, "no scene 'ada'; known scenes: duo"),
        ({"character": "../etc"}, 400, "character id '../etc' is not valid"),
        ({"scene": "Duo"}, 400, "scene id 'Duo' is not valid"),
        ({"character": "ada", "scene": "duo"}, 400, "a character or a scene, not both"),
        ({"charcter": "bo"}, 400, "Extra inputs are not permitted"),
    ],
)
def test_unknown_or_invalid_ids_are_refused_with_why(client, who, status, why):
    response = client.post("/api/livekit/token", json=who)
    assert response.status_code == status
    assert set(response.json()) == {"error", "detail"}
    assert why in response.json()["detail"]


def test_neither_the_secret_nor_the_key_reaches_the_browser(client):
    for who in ({"character": "ada"}, {"scene": "duo"}, {"character": "nobody"}, {"scene": 3}):
        text = client.post("/api/livekit/token", json=who).text
        assert SECRET not in text and KEY not in text
    token = client.post("/api/livekit/token", json={}).json()["token"]
    # inside the token (base64) the key is its issuer, as LiveKit needs to pick the secret;
    # the secret is nowhere in it
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["iss"] == KEY and SECRET not in json.dumps(payload)
    assert SECRET not in repr(SETTINGS) and SECRET not in str(SETTINGS)


def test_settings_come_from_the_environment():
    assert LiveKitSettings.from_env({}) is None  # the local transport
    assert LiveKitSettings.from_env({"LIVEKIT_URL": " "}) is None
    settings = LiveKitSettings.from_env(ENV)
    assert settings == LiveKitSettings("wss://livekit.example", KEY, SECRET)
    assert settings.agent_name == "avatar" and settings.ttl_s == TOKEN_TTL_S == 120
    named = LiveKitSettings.from_env({**ENV, "LIVEKIT_AGENT_NAME": "avatar-eu"})
    assert named.agent_name == "avatar-eu"  # the name the worker registers under


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"LIVEKIT_URL": "wss://h"}, "LIVEKIT_API_KEY and LIVEKIT_API_SECRET are not"),
        ({"LIVEKIT_URL": "wss://h", "LIVEKIT_API_KEY": KEY}, "LIVEKIT_API_SECRET is not"),
        ({"LIVEKIT_URL": "wss://h", "LIVEKIT_API_SECRET": SECRET}, "LIVEKIT_API_KEY is not"),
        ({**ENV, "LIVEKIT_URL": "livekit.example"}, "is not a LiveKit server URL"),
    ],
)
def test_partial_settings_are_an_error_that_names_what_is_missing(env, why):
    with pytest.raises(ValueError, match=why) as err:
        LiveKitSettings.from_env(env)
    assert env.get("LIVEKIT_API_SECRET", SECRET) not in str(err.value)
