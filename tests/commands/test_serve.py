"""`avatar serve`: loopback unless told otherwise, a login for the console off loopback, a
clear exit without the embedded model, and the app it runs (console, calls, config)."""

from __future__ import annotations

import argparse
import functools

import jwt
import pytest
from fastapi.testclient import TestClient

import app.avatar.engine
from app.local_call import CallLimits
from avatar_engine.embedded import EmbeddedModel
from commands.serve import add_parsers, check_limits
from web.limits import WebLimits
from web.livekit_token import TOKEN_TTL_S


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="avatar")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["serve", *argv])


@pytest.fixture
def ran(monkeypatch, micro_engine):
    """uvicorn.run replaced by a recorder; the engine is the micro one."""
    runs = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: runs.append((app, kw)))
    monkeypatch.setattr(app.avatar.engine, "load_engine", lambda **_: micro_engine)
    monkeypatch.delenv("AVATAR_AUTH", raising=False)
    monkeypatch.delenv("LIVEKIT_URL", raising=False)
    return runs


def test_defaults_are_loopback_port_7860_one_session():
    args = parse()
    assert (args.host, args.port, args.sessions, args.data) == ("127.0.0.1", 7860, 1, None)


def test_the_limit_flags_default_to_the_limits_themselves():
    args = parse()
    check_limits(args)
    assert args.call_limits == CallLimits() and args.web_limits == WebLimits()
    assert args.token_ttl == TOKEN_TTL_S


def test_the_limit_flags_set_the_limits():
    args = parse(
        *("--connect-window", "3", "--max-call", "10", "--idle-timeout", "60"),
        *("--peer-timeout", "4", "--calls-per-client", "2", "--abandoned-wait", "0"),
        *("--calls-per-minute", "20", "--login-attempts", "3"),
    )
    check_limits(args)
    assert args.call_limits == CallLimits(
        connect_window_s=3,
        max_call_s=600,
        idle_s=60,
        peer_timeout_s=4,
        calls_per_client=2,
        abandoned_wait_s=0,
    )
    assert args.web_limits == WebLimits(calls_per_minute=20, login_failures=3)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--connect-window", "0"), ("--max-call", "-1"), ("--calls-per-client", "0"),
     ("--abandoned-wait", "-1"), ("--token-ttl", "0"), ("--sessions", "0")],
)  # fmt: skip
def test_a_limit_out_of_range_is_refused_naming_its_flag(ran, flag, value):
    args = parse(flag, value)
    with pytest.raises(ValueError, match=f"{flag} must be"):
        args.func(args)
    assert ran == []


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "example.org"])
def test_another_address_needs_a_console_login(ran, host):
    args = parse("--host", host)
    with pytest.raises(ValueError, match=f"--host {host} opens the server .* --auth USER:PASS"):
        args.func(args)
    assert ran == []


@pytest.mark.parametrize("auth", ["nopassword", ":secret", "user:"])
def test_a_login_is_user_colon_password(ran, auth):
    args = parse("--auth", auth)
    with pytest.raises(ValueError, match="the login must be USER:PASS"):
        args.func(args)
    assert ran == []


def test_without_the_embedded_model_it_says_so_and_exits_2(monkeypatch, tmp_path, capsys):
    missing = functools.partial(EmbeddedModel, directory=tmp_path / "models")
    monkeypatch.setattr(app.avatar.engine, "EmbeddedModel", missing)
    args = parse("--data", str(tmp_path / "data"))
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "avatar serve: the embedded model in" in err and "dit.safetensors" in err


def test_it_serves_calls_and_the_console_behind_a_login(ran, tmp_path, capsys):
    args = parse("--host", "0.0.0.0", "--port", "8123", "--auth", "ann:pw", "--data", str(tmp_path))
    assert args.func(args) == 0
    ((served, options),) = ran
    assert options == {"host": "0.0.0.0", "port": 8123, "loop": "uvloop", "log_level": "info"}
    assert "http://0.0.0.0:8123/" in capsys.readouterr().out
    with TestClient(served) as http:
        root = http.get("/", follow_redirects=False)
        anonymous = http.get("/api/config")
        locked = http.get("/console/config")
        refused = http.post("/console/login", data={"username": "ann", "password": "no"})
        login = http.post("/console/login", data={"username": "ann", "password": "pw"})
        opened = http.get("/console/config")
        config = http.get("/api/config")  # the console's session cookie opens the rest
        cast = http.get("/api/cast", params={"character": "ada"})  # seeded into the data dir
    assert root.headers["location"] == "/console/"
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    assert config.json() == {"transport": "local"}
    assert cast.json()["characters"] == ["Ada"]
    assert (tmp_path / "characters" / "ada").is_dir()
    assert locked.status_code == 401 and refused.status_code != 200
    assert login.status_code == 200 and opened.status_code == 200


def test_livekit_settings_come_from_the_environment(ran, monkeypatch, tmp_path):
    monkeypatch.setenv("LIVEKIT_URL", "ws://127.0.0.1:7880")
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    args = parse("--data", str(tmp_path), "--token-ttl", "45")
    with pytest.raises(ValueError, match="LIVEKIT_URL is set, but LIVEKIT_API_KEY"):
        args.func(args)
    monkeypatch.setenv("LIVEKIT_API_KEY", "key")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "secret" * 6)
    assert args.func(args) == 0
    ((served, _),) = ran
    with TestClient(served) as http:
        assert http.get("/api/config").json() == {"transport": "livekit"}
        token = http.post("/api/livekit/token", json={"character": "ada"})
    assert token.status_code == 200
    claims = jwt.decode(token.json()["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["nbf"] == 45
