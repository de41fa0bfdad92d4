"""What the server exposes and to whom (docs/WEB.md, "Exposure"): with a login nothing but the
console's login page is open and failed logins are limited per address; LiveKit tokens are
limited per address; request bodies are capped before they are read; every refusal of the
API has one shape, echoes no long id and names no Python or aiortc internals."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient

from app.store import Store
from tests.web.conftest import LIBRARY, calls_of, offer_sdp, served
from web.app import create_app
from web.console import build_console
from web.limits import WebLimits
from web.livekit_token import LiveKitSettings

KEY, SECRET = "APIkey4test", "secret-for-tests-only-0123456789abcdef"
LIVEKIT = LiveKitSettings(url="wss://livekit.example", api_key=KEY, api_secret=SECRET)
LOGIN = ("ann", "pw-for-tests")
OTHER_ADDRESS = ("192.0.2.9", 50000)  # TestClient's stand-in for another caller


GOOD = asyncio.run(offer_sdp())


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def built() -> list:
    return []


@pytest.fixture
def guarded(micro_engine, built):
    """The app behind a login, the LiveKit token route on; its engine factory counts."""

    def factory():
        built.append(micro_engine)
        return micro_engine

    return create_app(engine_factory=factory, library=LIBRARY, livekit=LIVEKIT, login=LOGIN)


# ---- finding 4: off loopback, nothing unauthenticated starts work --------------------------

OPEN_BEFORE = [  # what an anonymous client reached on a server started with --auth
    ("GET", "/call?character=ada"),
    ("GET", "/api/library"),
    ("GET", "/api/pictures/character/ada"),
    ("GET", "/api/cast?character=ada"),
    ("GET", "/api/config"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/static/call.js"),
    ("POST", "/api/call/offer"),
    ("POST", "/api/livekit/token"),
]


def request(http: TestClient, method: str, path: str, **kw):
    if path == "/api/call/offer":
        kw.setdefault("json", {"character": "ada", "sdp": GOOD, "type": "offer"})
    elif path == "/api/livekit/token":
        kw.setdefault("json", {"character": "ada"})
    return http.request(method, path, **kw)


def test_with_a_login_nothing_but_the_console_login_is_open(guarded, built):
    with TestClient(guarded) as http:
        anonymous = {path: request(http, m, path) for m, path in OPEN_BEFORE}
        wrong = request(http, "POST", "/api/livekit/token", headers=basic("ann", "nope"))
        root = http.get("/", follow_redirects=False)
        gallery = http.get("/", headers=basic(*LOGIN))
        allowed = {
            path: request(http, m, path, headers=basic(*LOGIN))
            for m, path in OPEN_BEFORE
            if path != "/api/call/offer"  # would start a call: the call tests connect them
        }
    for path, response in {**anonymous, "wrong password": wrong}.items():
        assert response.status_code == 401, path
        assert response.json() == {
            "error": "unauthorized",
            "detail": "this server asks for a login: the console's user and password",
        }
        assert response.headers["www-authenticate"].startswith('Basic realm="Talking avatar"')
    assert built == [] and calls_of(guarded).open_calls == []  # nothing was started
    # the gallery's address leads to the console's login; with the login it is the gallery
    assert root.status_code == 307 and root.headers["location"] == "/console/"
    assert gallery.status_code == 200 and "gallery.js" in gallery.text
    for path, response in allowed.items():
        assert response.status_code == 200, (path, response.text)
    assert "token" in allowed["/api/livekit/token"].json()


def test_the_console_session_opens_the_call_page(tmp_path: Path, micro_engine):
    store = Store(tmp_path / "data")
    console = build_console(store, render_engine=lambda: micro_engine)
    app = create_app(
        engine_factory=lambda: micro_engine, library=store.library, console=console, login=LOGIN
    )
    with TestClient(app) as http:
        before = http.get("/call?character=ada")
        login = http.post("/console/login", data={"username": "ann", "password": LOGIN[1]})
        after = http.get("/call?character=ada")
        cast = http.get("/api/cast", params={"character": "ada"})
    assert before.status_code == 401
    assert login.status_code == 200
    assert after.status_code == 200 and '<video id="avatar"' in after.text
    assert cast.json()["characters"] == ["Ada"]


def test_failed_logins_are_limited_per_address(tmp_path: Path, micro_engine):
    store = Store(tmp_path / "data")
    console = build_console(store, render_engine=lambda: micro_engine)
    limits = WebLimits(login_failures=5)
    app = create_app(
        engine_factory=lambda: micro_engine,
        library=store.library,
        console=console,
        login=LOGIN,
        web_limits=limits,
    )
    with TestClient(app) as http, TestClient(app, client=OTHER_ADDRESS) as other:
        started = time.monotonic()
        guesses = [http.get("/api/config", headers=basic("ann", f"guess{i}")) for i in range(3)]
        guesses += [
            http.post("/console/login", data={"username": "ann", "password": f"guess{i}"})
            for i in range(3, 30)
        ]
        took = time.monotonic() - started
        right = http.get("/api/config", headers=basic(*LOGIN))
        right_form = http.post("/console/login", data={"username": "ann", "password": LOGIN[1]})
        elsewhere = other.get("/api/config", headers=basic(*LOGIN))
    statuses = [g.status_code for g in guesses]
    assert statuses[:5] == [401, 401, 401, 400, 400]  # wrong (Basic, then the console's form)
    assert set(statuses[5:]) == {429}  # then refused unheard, 25 of 30
    refusal = guesses[-1]
    assert refusal.json()["error"] == "too_many_attempts"
    assert "too many failed logins from your address; try again in" in refusal.json()["detail"]
    assert 55 <= int(refusal.headers["retry-after"]) <= 60
    # while refused, even the right password is not tried: guessing learns nothing
    assert right.status_code == 429 and right_form.status_code == 429
    assert elsewhere.status_code == 200  # another address is not held up
    assert took < 10


def test_livekit_tokens_are_limited_per_address(micro_engine):
    app = create_app(
        engine_factory=lambda: micro_engine,
        library=LIBRARY,
        livekit=LIVEKIT,
        web_limits=WebLimits(calls_per_minute=3),
    )
    with TestClient(app) as http, TestClient(app, client=OTHER_ADDRESS) as other:
        minted = [http.post("/api/livekit/token", json={"character": "ada"}) for _ in range(5)]
        elsewhere = other.post("/api/livekit/token", json={"character": "bo"})
    assert [r.status_code for r in minted] == [200, 200, 200, 429, 429]
    assert minted[3].json()["error"] == "busy"
    assert "too many calls started from your address; try again in" in minted[3].json()["detail"]
    assert int(minted[3].headers["retry-after"]) >= 55
    assert elsewhere.status_code == 200
    rooms = {r.json()["room"] for r in minted[:3]}
    assert len(rooms) == 3  # one room each
    for response in minted[:3]:  # each for its own room only, for two minutes
        claims = jwt.decode(response.json()["token"], SECRET, algorithms=["HS256"])
        assert claims["video"]["room"] == response.json()["room"] and claims["video"]["roomJoin"]
        assert not claims["video"].get("roomCreate") and not claims["video"].get("roomList")
        assert claims["exp"] - claims["nbf"] == 120


# ---- finding 9: request bodies are capped before they are read --------------------------


def raw_request(base_url: str, head: str, body_parts: list[bytes]) -> tuple[bytes, float]:
    """Send a request head and some body over a socket; the response, and seconds it took."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head.encode())
        for part in body_parts:
            sock.sendall(part)
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received, time.monotonic() - started


def test_a_huge_body_is_refused_before_it_is_read(web_app):
    with served(web_app) as base_url:
        # 300 MB announced, 1 KiB sent: the answer comes without the rest ever being read
        head = (
            "POST /api/call/offer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {300_000_000}\r\n\r\n"
        )
        announced, took = raw_request(base_url, head, [b"{" + b" " * 1023])
        # no length announced: streamed in chunks, refused once past the cap
        head = (
            "POST /api/call/offer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        size = 16 * 1024
        chunks = [b"%x\r\n" % size + b" " * size + b"\r\n"] * (
            WebLimits().max_body_bytes // size + 1
        )
        streamed, _ = raw_request(base_url, head, chunks)
    for response in (announced, streamed):
        status, _, rest = response.partition(b"\r\n")
        assert status == b"HTTP/1.1 413 Request Entity Too Large", response[:200]
        body = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["error"] == "too_large"
    assert (
        "300000000 bytes; this server reads at most 131072"
        in json.loads(announced.partition(b"\r\n\r\n")[2])["detail"]
    )
    assert took < 2.0
    assert calls_of(web_app).open_calls == []


# ---- finding 10: one error shape, short echoes, no internals ------------------------------

NO_SETUP = GOOD.replace("a=setup:actpass\r\n", "")
NO_RTCP_MUX = GOOD.replace("a=rtcp-mux\r\n", "")
LONG_ID = "a" * 10_240


def test_every_refusal_has_one_shape(guarded):
    cases = {
        "no login": ("GET", "/api/config", {}),
        "bad JSON": ("POST", "/api/call/offer", {"content": b"{"}),
        "missing field": ("POST", "/api/call/offer", {"json": {"type": "offer"}}),
        "bad offer": ("POST", "/api/call/offer", {"json": {"sdp": "hello", "type": "offer"}}),
        "unknown id": ("GET", "/api/cast?character=nobody", {}),
        "invalid id": ("POST", "/api/livekit/token", {"json": {"scene": "../x"}}),
        "unknown route": ("GET", "/api/nothing", {}),
        "wrong method": ("GET", "/api/call/offer", {}),
        "too large": ("POST", "/api/livekit/token", {"content": b" " * 200_000}),
    }
    expected = {
        "no login": (401, "unauthorized"),
        "bad JSON": (400, "bad_request"),
        "missing field": (400, "bad_request"),
        "bad offer": (400, "bad_offer"),
        "unknown id": (404, "not_found"),
        "invalid id": (400, "bad_request"),
        "unknown route": (404, "not_found"),
        "wrong method": (405, "method_not_allowed"),
        "too large": (413, "too_large"),
    }
    with TestClient(guarded) as http:
        for name, (method, path, kw) in cases.items():
            headers = {} if name == "no login" else basic(*LOGIN)
            if "content" in kw:
                headers["Content-Type"] = "application/json"
            response = http.request(method, path, headers=headers, **kw)
            assert (response.status_code, response.json().get("error")) == expected[name], name
            assert set(response.json()) == {"error", "detail"}, name
            assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_a_long_id_is_not_echoed(web_app):
    with TestClient(web_app) as http:
        responses = [
            http.get("/api/cast", params={"character": LONG_ID}),
            http.get("/api/cast", params={"scene": LONG_ID}),
            http.post("/api/call/offer", json={"character": LONG_ID, "sdp": GOOD, "type": "offer"}),
            http.post("/api/call/offer", json={"sdp": GOOD, "type": LONG_ID}),
        ]
    for response in responses:
        assert response.status_code == 400
        assert "at most" in response.json()["detail"]
        assert len(response.text) < 200 and "aaaaaaaaaa" not in response.text


@pytest.mark.parametrize(
    ("sdp", "says"),
    [
        (NO_SETUP, "audio section has no DTLS role (a=setup)"),
        (NO_RTCP_MUX, "audio section does not multiplex RTCP with RTP (a=rtcp-mux)"),
        (GOOD[: len(GOOD) // 3], "the SDP offer cannot be parsed: a line is not valid SDP"),
    ],
)
def test_an_offer_refusal_names_what_is_wrong_in_its_own_words(web_app, sdp, says):
    with TestClient(web_app) as http:
        response = http.post(
            "/api/call/offer", json={"character": "ada", "sdp": sdp, "type": "offer"}
        )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert says in detail
    for internal in ("Error", "Traceback", "aiortc", "Media sections", "fingerprint)"):
        assert internal not in detail
