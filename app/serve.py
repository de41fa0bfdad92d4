"""`avatar serve`: the call page and the creator console in one process (uvicorn with uvloop).

Loopback by default. Any other address is opened only when asked for with --host, and then
the console asks for a login (--auth USER:PASS or AVATAR_AUTH), since it edits the library.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
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
        raise ValueError(f"console login must be USER:PASS (from --auth or {AUTH_ENV})")
    return user, password


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def engine_factory(first: AvatarEngine, *, device: str):
    """Hands out the engine built at start first, then builds one per further call slot."""
    from app.conversation import load_engine

    built = [first]

    def factory() -> AvatarEngine:
        return built.pop() if built else load_engine(device=device)

    return factory


def build_app(args: argparse.Namespace, engine: AvatarEngine) -> FastAPI:
    """The app `avatar serve` runs: calls on `engine` (and more like it), the console over
    the data directory."""
    from app.conversation import load_engine
    from app.store import Store
    from web.app import create_app
    from web.console import build_console
    from web.livekit_token import LiveKitSettings

    store = Store(args.data)
    console = build_console(store, render_engine=lambda: load_engine(device=args.device))
    return create_app(
        engine_factory=engine_factory(engine, device=args.device),
        library=store.library,
        sessions=args.sessions,
        console=console,
        livekit=LiveKitSettings.from_env(),  # None without LIVEKIT_URL: local calls
        console_auth=args.console_auth,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    args.console_auth = parse_auth(args.auth or os.environ.get(AUTH_ENV))
    if not is_loopback(args.host) and args.console_auth is None:
        raise ValueError(
            f"--host {args.host} opens the console beyond this machine: give a login with "
            f"--auth USER:PASS or {AUTH_ENV}=USER:PASS"
        )
    if args.sessions < 1:
        raise ValueError(f"--sessions must be 1 or more, not {args.sessions}")
    import uvicorn

    from app.conversation import load_engine

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
    serve.add_argument("--auth", metavar="USER:PASS", help=f"console login (default: ${AUTH_ENV})")
    serve.add_argument("--device", default="cpu", help="the engines' device, e.g. cuda")
    serve.set_defaults(func=cmd_serve)
