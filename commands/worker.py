"""`avatar worker`: hands over to livekit's CLI with a LiveKit worker for the avatar."""

from __future__ import annotations

import argparse
import os


def cmd_worker(args: argparse.Namespace) -> int:
    from app.avatar_job import avatar_agent_name_from
    from app.casting import agent_name_from
    from app.livekit_worker import LiveKitWorkerSettings, run_worker

    name_from = avatar_agent_name_from if args.role == "avatar" else agent_name_from
    settings = LiveKitWorkerSettings(
        sessions=args.sessions,
        device=args.device,
        runtime=args.runtime,
        data=args.data,
        role=args.role,
        agent_name=name_from(os.environ),
    )
    run_worker(args.livekit_args, settings=settings)
    return 0  # livekit's CLI exits the process itself


def add_parsers(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser(
        "worker",
        help="run a LiveKit Agents worker that joins rooms as the avatar",
        description="Run a LiveKit Agents worker (needs LIVEKIT_URL, LIVEKIT_API_KEY and "
        "LIVEKIT_API_SECRET). What follows the options goes to livekit's CLI: start (the "
        "default), dev, or connect --room NAME; put --help after one for its options.",
    )
    worker.add_argument(
        "--sessions", type=int, default=1, help="conversations this worker runs at once"
    )
    worker.add_argument("--device", default="cpu", help="the engine's device, e.g. cuda")
    worker.add_argument("--runtime", choices=("local", "disaggregated"), default="local")
    worker.add_argument(
        "--role", choices=("conversation", "avatar"), default="conversation",
        help="conversation: our characters answer the caller (dispatched as "
        "$LIVEKIT_AGENT_NAME, default 'avatar'); avatar: the face of another LiveKit agent "
        "that starts app.livekit_avatar.AvatarSession (dispatched as "
        "$LIVEKIT_AVATAR_AGENT_NAME, default 'avatar-participant')",
    )  # fmt: skip
    worker.add_argument(
        "--data", metavar="DIR", help="the console's library (default: $AVATAR_DATA or XDG)"
    )
    worker.add_argument(
        "livekit_args", nargs=argparse.REMAINDER, metavar="start|dev|connect ...",
        help="livekit CLI command and options",
    )  # fmt: skip
    worker.set_defaults(func=cmd_worker)
