"""`avatar serve`: the call page and the creator console in one process (uvicorn with uvloop).

Loopback by default. Any other address is opened only when asked for with --host, and then
a login is needed (--auth USER:PASS or AVATAR_AUTH): with one, everything but the console's
login page asks for it, so nothing unauthenticated starts work. The limits on calls, logins
and requests are flags; docs/WEB.md, "Exposure", lists them with their defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.avatar import AvatarEngine

AUTH_ENV = "AVATAR_AUTH"


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"the login must be USER:PASS (from --auth or {AUTH_ENV})")
    return user, password


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def engine_factory(first: AvatarEngine, *, device: str) -> Callable[[], AvatarEngine]:
    """Hands out the engine built at start first, then builds one per further call slot."""
    from app.avatar.engine import load_engine

    built = [first]

    def factory() -> AvatarEngine:
        return built.pop() if built else load_engine(device=device)

    return factory


def build_app(args: argparse.Namespace, engine: AvatarEngine) -> FastAPI:
    """The app `avatar serve` runs: calls on `engine` (and more like it), the console over
    the data directory."""
    from app.avatar.engine import load_engine
    from app.store import Store
    from web.app import create_app
    from web.console import build_console
    from web.livekit_token import LiveKitSettings

    store = Store(args.data)
    console = build_console(store, render_engine=lambda: load_engine(device=args.device))
    livekit = LiveKitSettings.from_env()  # None without LIVEKIT_URL: local calls
    if livekit is not None:
        livekit = dataclasses.replace(livekit, ttl_s=args.token_ttl)
    return create_app(
        engine_factory=engine_factory(engine, device=args.device),
        library=store.library,
        sessions=args.sessions,
        console=console,
        livekit=livekit,
        login=args.login,
        call_limits=args.call_limits,
        web_limits=args.web_limits,
    )


def check_limits(args: argparse.Namespace) -> None:
    """The limit flags as CallLimits and WebLimits (args.call_limits, args.web_limits);
    ValueError naming the flag when one is out of range."""
    from app.local_call import CallLimits
    from web.limits import WebLimits

    flags = {
        "--sessions": args.sessions,
        "--connect-window": args.connect_window,
        "--max-call": args.max_call,
        "--idle-timeout": args.idle_timeout,
        "--peer-timeout": args.peer_timeout,
        "--calls-per-client": args.calls_per_client,
        "--calls-per-minute": args.calls_per_minute,
        "--login-attempts": args.login_attempts,
        "--token-ttl": args.token_ttl,
    }
    for flag, value in flags.items():
        if value <= 0:
            raise ValueError(f"{flag} must be more than 0, not {value:g}")
    if args.abandoned_wait < 0:
        raise ValueError(f"--abandoned-wait must be 0 or more, not {args.abandoned_wait:g}")
    args.call_limits = CallLimits(
        connect_window_s=args.connect_window,
        max_call_s=args.max_call * 60,
        idle_s=args.idle_timeout,
        peer_timeout_s=args.peer_timeout,
        calls_per_client=args.calls_per_client,
        abandoned_wait_s=args.abandoned_wait,
    )
    args.web_limits = WebLimits(
        calls_per_minute=args.calls_per_minute, login_failures=args.login_attempts
    )


def cmd_serve(args: argparse.Namespace) -> int:
    args.login = parse_auth(args.auth or os.environ.get(AUTH_ENV))
    if not is_loopback(args.host) and args.login is None:
        raise ValueError(
            f"--host {args.host} opens the server beyond this machine: give a login with "
            f"--auth USER:PASS or {AUTH_ENV}=USER:PASS"
        )
    check_limits(args)
    import uvicorn

    from app.avatar.engine import load_engine

    try:
        engine = load_engine(device=args.device)
    except FileNotFoundError as err:
        print(f"avatar serve: {err}", file=sys.stderr)
        return 2
    app = build_app(args, engine)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"avatar serve: http://{host}:{args.port}/ (console /console, calls /call)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", log_level="info")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve the call page and the creator console",
        description="Serve the call page and the creator console from one process, on "
        "127.0.0.1 unless --host says otherwise (then the console needs a login).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument(
        "--sessions", type=int, default=1, help="calls at once (each streams its own engine)"
    )
    serve.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the library's data directory (default: $AVATAR_DATA, else "
        "~/.local/share/talking-avatar)",
    )
    serve.add_argument(
        "--auth",
        metavar="USER:PASS",
        help=f"the login the console, the call page and the API ask for (default: ${AUTH_ENV})",
    )
    serve.add_argument("--device", default="cpu", help="the engines' device, e.g. cuda")
    limits = serve.add_argument_group("limits (docs/WEB.md, Exposure)")
    limits.add_argument(
        "--connect-window",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds an answered call holds its slot before it must connect (default 5)",
    )
    limits.add_argument(
        "--max-call", type=float, default=60.0, metavar="MIN", help="longest call (default 60)"
    )
    limits.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="a call ends when nobody has spoken this long (default 300)",
    )
    limits.add_argument(
        "--peer-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="a call ends when the browser has sent nothing this long (default 5)",
    )
    limits.add_argument(
        "--calls-per-client",
        type=int,
        default=1,
        metavar="N",
        help="calls one address may hold at once (default 1)",
    )
    limits.add_argument(
        "--abandoned-wait",
        type=float,
        default=30.0,
        metavar="S",
        help="an address whose answered call never connected waits this long (default 30)",
    )
    limits.add_argument(
        "--calls-per-minute",
        type=int,
        default=10,
        metavar="N",
        help="call offers or LiveKit tokens one address may ask for a minute (default 10)",
    )
    limits.add_argument(
        "--login-attempts",
        type=int,
        default=5,
        metavar="N",
        help="failed logins an address may make a minute before it must wait (default 5)",
    )
    limits.add_argument(
        "--token-ttl",
        type=int,
        default=120,
        metavar="S",
        help="seconds a LiveKit token may be used to join its room (default 120)",
    )
    serve.set_defaults(func=cmd_serve)
