"""`avatar worker`: settings, load reporting, the job entrypoint, and a real LiveKit room."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from livekit.agents import AgentServer
from livekit.agents.testing import fake_job_context

from app import avatar_job, avatar_participant, casting, conversation, livekit_worker
from app.avatar import engine as engine_module
from app.avatar_job import AvatarJob
from app.casting import CastRequest
from app.livekit_worker import LiveKitWorkerSettings
from tests.app.stand_in_room import StandInRoom, StandInServer

LIVEKIT = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in LIVEKIT}
    return subprocess.run(
        [sys.executable, "-m", "commands.cli", *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=60,
    )


def test_worker_without_livekit_settings_exits_naming_them():
    result = run_cli("worker")
    assert result.returncode == 2
    assert "LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET" in result.stderr
    result = run_cli("worker", "dev", LIVEKIT_URL="wss://example.livekit.cloud")
    assert result.returncode == 2
    assert "needs LIVEKIT_API_KEY, LIVEKIT_API_SECRET" in result.stderr
    assert "LIVEKIT_URL" not in result.stderr


def test_worker_forwards_to_livekits_cli():
    result = run_cli("worker", "start", "--help")
    assert result.returncode == 0, result.stderr
    assert "--url" in result.stdout and "--api-secret" in result.stdout


def test_flags_stand_in_for_the_variables():
    argv = ["start", "--url", "wss://x", "--api-key=k"]
    assert livekit_worker.missing_settings(argv, {}) == ["LIVEKIT_API_SECRET"]
    assert livekit_worker.missing_settings(["dev"], dict.fromkeys(LIVEKIT, "v")) == []


def test_load_is_the_share_of_session_slots_in_use():
    load = livekit_worker.SessionLoad(sessions=4)
    server = SimpleNamespace(active_jobs=[])
    assert load(server) == 0.0
    server.active_jobs = ["job"] * 3
    assert load(server) == 0.75
    server.active_jobs = ["job"] * 5  # a job that was already dispatched still counts as full
    assert load(server) == 1.0
    options = livekit_worker.worker_options(LiveKitWorkerSettings(sessions=4))
    assert options.load_threshold == 1.0  # full (unavailable to dispatch) at 4 sessions
    assert options.num_idle_processes == 4  # a prewarmed engine per slot
    with pytest.raises(ValueError, match="at least 1 session"):
        LiveKitWorkerSettings(sessions=0)


def test_the_worker_registers_for_explicit_dispatch_by_name(monkeypatch):
    monkeypatch.delenv(casting.AGENT_NAME_VARIABLE, raising=False)
    assert livekit_worker.worker_options(LiveKitWorkerSettings()).agent_name == "avatar"
    monkeypatch.setenv(casting.AGENT_NAME_VARIABLE, "avatar-eu")  # livekit's variable
    assert livekit_worker.worker_options(LiveKitWorkerSettings()).agent_name == "avatar-eu"
    named = LiveKitWorkerSettings(agent_name="avatar-gpu")  # an explicit name wins
    assert livekit_worker.worker_options(named).agent_name == "avatar-gpu"
    # livekit registers the entrypoint under the name, which makes dispatch explicit
    server = AgentServer.from_server_options(livekit_worker.worker_options(named))
    assert server._agent_name == "avatar-gpu"
    with pytest.raises(ValueError, match="agent name"):
        LiveKitWorkerSettings(agent_name="")


def test_prewarm_builds_the_engine_once_per_process_then_freezes_the_heap(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(engine_module, "load_engine", lambda **kw: calls.append(kw) or "engine")
    # not this test process's heap: record the calls instead
    monkeypatch.setattr(livekit_worker.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(livekit_worker.gc, "freeze", lambda: calls.append("freeze"))
    options = livekit_worker.worker_options(
        LiveKitWorkerSettings(device="cuda", data=str(tmp_path))
    )
    proc = SimpleNamespace(userdata={})
    options.prewarm_fnc(proc)
    assert proc.userdata[livekit_worker.ENGINE_KEY] == "engine"
    # the console's library, so characters created there can be called
    assert "ada" in proc.userdata[livekit_worker.LIBRARY_KEY].ids("character")
    assert (tmp_path / "characters" / "ada").exists()
    # the engine's objects are built, the setup's garbage collected, then the rest frozen
    assert calls == [{"device": "cuda", "runtime": "local"}, "collect", "freeze"]


def test_entrypoint_casts_what_the_job_asks_for(monkeypatch):
    started = []

    class Conversation:
        async def aclose(self) -> None:
            started.append("closed")

    async def start_conversation(*, room, engine, request, library):
        started.append((room, engine, request, library))
        return Conversation()

    monkeypatch.setattr(conversation, "start_conversation", start_conversation)

    async def run() -> None:
        with fake_job_context(job_metadata='{"scene": "duo"}') as ctx:
            ctx.proc.userdata[livekit_worker.ENGINE_KEY] = "engine"
            ctx.proc.userdata[livekit_worker.LIBRARY_KEY] = "library"
            await livekit_worker.entrypoint(ctx)
            assert started == [(ctx.room, "engine", CastRequest(scene="duo"), "library")]
            for callback in ctx._shutdown_callbacks:
                await callback("test")
            assert started[-1] == "closed"

    asyncio.run(run())


@pytest.mark.skipif(not os.environ.get("LIVEKIT_URL"), reason="needs a LiveKit server: LIVEKIT_URL")
def test_worker_joins_a_real_room_and_publishes_the_avatar():
    from tests.app.livekit_room import run_worker_in_room

    asyncio.run(run_worker_in_room(metadata='{"character": "ada"}', timeout=120))


def test_an_avatar_worker_registers_under_its_own_name(monkeypatch):
    from commands.cli import build_parser

    given = []
    monkeypatch.setattr(livekit_worker, "run_worker", lambda argv, settings: given.append(settings))
    monkeypatch.delenv(avatar_job.AVATAR_AGENT_NAME_VARIABLE, raising=False)
    parser = build_parser()
    for argv in (["worker", "--role", "avatar", "dev"], ["worker", "dev"]):
        args = parser.parse_args(argv)
        args.func(args)
    avatar, conversation_worker = given
    assert (avatar.role, avatar.agent_name) == ("avatar", "avatar-participant")
    assert (conversation_worker.role, conversation_worker.agent_name) == ("conversation", "avatar")
    options = livekit_worker.worker_options(avatar)
    assert options.entrypoint_fnc is livekit_worker.avatar_entrypoint
    assert options.agent_name == "avatar-participant"


def test_the_avatar_entrypoint_joins_with_the_agents_token_and_leaves_with_it(monkeypatch):
    job = AvatarJob(CastRequest(character="ada"), "agent-1", "avatar-agent-1", "ws://lk", "jwt")
    started = []

    class Participant:
        async def aclose(self) -> None:
            started.append("closed")

    async def start_avatar_participant(*, room, engine, job, library):
        started.append((room.isconnected(), engine, job, library))
        return Participant()

    monkeypatch.setattr(avatar_participant, "start_avatar_participant", start_avatar_participant)

    async def run() -> None:
        server = StandInServer()
        agent = StandInRoom(server, "agent-1")
        agent.join()
        room = StandInRoom(server, "avatar-agent-1")
        with fake_job_context(room=room, job_metadata=job.to_metadata()) as ctx:
            ctx.proc.userdata[livekit_worker.ENGINE_KEY] = "engine"
            ctx.proc.userdata[livekit_worker.LIBRARY_KEY] = "library"
            ended = []
            monkeypatch.setattr(type(ctx), "shutdown", lambda self, reason="": ended.append(reason))
            await livekit_worker.avatar_entrypoint(ctx)
            assert room.joined_with == ("ws://lk", "jwt")  # the token the agent minted
            assert started == [(True, "engine", job, "library")]
            agent.leave()  # the agent is gone: so is its avatar
            assert ended == ["the agent left"]
            for callback in ctx._shutdown_callbacks:
                await callback("test")
            assert started[-1] == "closed"

    asyncio.run(run())
