"""`avatar worker`: a livekit-agents worker that joins rooms and runs avatar conversations.

LiveKit's dispatch hands each room to one worker; every worker reports its load (active
sessions / capacity), so rooms spread over workers on several machines. Each job process builds
the engine once (prewarm) and serves one conversation at a time. Workers register under an agent
name (explicit dispatch): they join only rooms whose token asks for that name
(web/livekit_token.py), with the character or scene in the job's metadata.

A worker has one of two roles. A "conversation" worker runs the whole call in its job: our
characters' agents and the avatar (app/conversation.py). An "avatar" worker is dispatched by
someone else's agent (app/livekit_avatar.py) and joins as the avatar participant only, taking
that agent's audio (app/avatar_participant.py).
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from app.casting import agent_name_from

if TYPE_CHECKING:
    from livekit.agents import AgentServer, JobContext, JobProcess, WorkerOptions

    from app.avatar.engine import RuntimeKind

logger = logging.getLogger(__name__)

# environment variable -> the livekit CLI flag that can stand in for it
REQUIRED_SETTINGS = {
    "LIVEKIT_URL": "--url",
    "LIVEKIT_API_KEY": "--api-key",
    "LIVEKIT_API_SECRET": "--api-secret",
}
COMMANDS = ("start", "dev", "connect")  # livekit CLI commands that reach a server
ENGINE_KEY = "avatar_engine"  # in JobProcess.userdata
LIBRARY_KEY = "avatar_library"
WorkerRole = Literal["conversation", "avatar"]


@dataclass(frozen=True)
class LiveKitWorkerSettings:
    """What each job process needs to know; picklable, as livekit sends it to its processes."""

    sessions: int = 1  # conversations this worker runs at once (its capacity)
    device: str = "cpu"  # of the engine's DiT (and decoder, with the local runtime)
    runtime: RuntimeKind = "local"  # or "disaggregated": DiT and decoder in their own processes
    # Explicit dispatch: a named worker joins only the rooms whose token (or a dispatch request)
    # names it, never every new room; an unnamed one would join rooms nobody asked it into.
    agent_name: str = field(default_factory=lambda: agent_name_from(os.environ))
    data: str | None = None  # the console's data directory (None: $AVATAR_DATA, then XDG)
    role: WorkerRole = "conversation"  # or "avatar": another agent's avatar participant

    def __post_init__(self) -> None:
        if self.sessions < 1:
            raise ValueError(f"a worker needs capacity for at least 1 session, not {self.sessions}")
        if not self.agent_name:
            raise ValueError("a worker needs an agent name: explicit dispatch only")


class SessionLoad:
    """load_fnc: the share of this worker's session slots in use (1.0 = full)."""

    def __init__(self, *, sessions: int) -> None:
        self._sessions = sessions

    def __call__(self, server: AgentServer) -> float:
        return min(1.0, len(server.active_jobs) / self._sessions)


def missing_settings(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The LIVEKIT_* variables neither set in `env` nor given as flags in `argv`."""
    given = {arg.split("=", 1)[0] for arg in argv}
    return [
        name for name, flag in REQUIRED_SETTINGS.items() if not env.get(name) and flag not in given
    ]


# The engine and livekit.agents take seconds to import: only job processes (and the worker
# itself, after the settings check) import them.


def prewarm(proc: JobProcess, *, settings: LiveKitWorkerSettings) -> None:
    """Build the engine once per job process, before any job arrives, and open the library
    the console edits, so characters made there can be called."""
    from app.avatar.engine import load_engine
    from app.store import Store

    proc.userdata[ENGINE_KEY] = load_engine(device=settings.device, runtime=settings.runtime)
    proc.userdata[LIBRARY_KEY] = Store(settings.data).library
    # The engine, torch and livekit leave ~400k long-lived objects: a full collection over
    # them holds the GIL for 230-450 ms, a stall the avatar's frames would show. Collect the
    # setup's garbage once now, then keep the survivors out of every later collection.
    gc.collect()
    gc.freeze()
    logger.info(
        "engine ready",
        extra={"pid": os.getpid(), "device": settings.device, "frozen": gc.get_freeze_count()},
    )


async def entrypoint(ctx: JobContext) -> None:
    """One room: read what the job asks for, join, start the avatar, then the session."""
    from app.casting import CastRequest
    from app.conversation import start_conversation

    request = CastRequest.from_metadata(ctx.job.metadata)
    where = {"room": ctx.job.room.name, "character": request.character, "scene": request.scene}
    logger.info("job", extra=where)
    await ctx.connect()
    conversation = await start_conversation(
        room=ctx.room,
        engine=ctx.proc.userdata[ENGINE_KEY],
        request=request,
        library=ctx.proc.userdata[LIBRARY_KEY],
    )
    ctx.add_shutdown_callback(conversation.aclose)


async def avatar_entrypoint(ctx: JobContext) -> None:
    """Another agent's avatar: join its room with the token it minted (as the avatar's own
    identity, publishing for the agent), show the cast, speak its audio. The job ends when the
    avatar leaves the room (the agent's AvatarSession removes it) or the agent does."""
    from livekit import rtc

    from app.avatar_job import AvatarJob
    from app.avatar_participant import start_avatar_participant

    job = AvatarJob.from_metadata(ctx.job.metadata)
    logger.info("avatar job", extra={"room": ctx.job.room.name, "job": repr(job)})

    def on_left(participant: rtc.RemoteParticipant) -> None:
        if participant.identity == job.agent_identity:
            ctx.shutdown("the agent left")

    ctx.room.on("participant_disconnected", on_left)
    # the job's room, joined with the agent's token: its disconnect ends the job. The audio
    # comes as data streams, so no track is worth subscribing to.
    await ctx.room.connect(job.url, job.token, options=rtc.RoomOptions(auto_subscribe=False))
    participant = await start_avatar_participant(
        room=ctx.room,
        engine=ctx.proc.userdata[ENGINE_KEY],
        job=job,
        library=ctx.proc.userdata[LIBRARY_KEY],
    )
    ctx.add_shutdown_callback(participant.aclose)


def worker_options(settings: LiveKitWorkerSettings) -> WorkerOptions:
    from livekit.agents import WorkerOptions

    return WorkerOptions(
        entrypoint_fnc=avatar_entrypoint if settings.role == "avatar" else entrypoint,
        prewarm_fnc=functools.partial(prewarm, settings=settings),
        agent_name=settings.agent_name,
        load_fnc=SessionLoad(sessions=settings.sessions),
        load_threshold=1.0,  # full when every session slot is taken, in dev and prod alike
        num_idle_processes=settings.sessions,  # a warm engine ready for every slot
        initialize_process_timeout=300.0,  # loading large weights takes a while
    )


def run_worker(
    argv: Sequence[str], *, settings: LiveKitWorkerSettings, env: Mapping[str, str] | None = None
) -> None:
    """Hand over to livekit's CLI (`start`, `dev`, `connect`, ...), which exits the process.

    Raises:
        ValueError: the LIVEKIT_* settings are missing, naming them.
    """
    argv = list(argv) or ["start"]
    env = os.environ if env is None else env
    if argv[0] in COMMANDS and "--help" not in argv:
        missing = missing_settings(argv, env)
        if missing:
            raise ValueError(
                f"the worker needs {', '.join(missing)}: set "
                f"{'it' if len(missing) == 1 else 'them'} to your LiveKit server's URL "
                "(wss://...) and an API key and secret from it "
                f"(or pass {', '.join(REQUIRED_SETTINGS[m] for m in missing)})"
            )
    from livekit.agents import cli

    options = worker_options(settings)
    sys.argv = ["avatar worker", *argv]  # livekit's CLI parses sys.argv itself
    cli.run_app(options)
