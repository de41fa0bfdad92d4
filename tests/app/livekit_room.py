"""Run `avatar worker` against a real LiveKit server and watch a room as a caller (or an
agent) would.

Used only when LIVEKIT_URL (with LIVEKIT_API_KEY and LIVEKIT_API_SECRET) is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from livekit import api, rtc

AVATAR_TRACKS = {"avatar_audio", "avatar_video"}


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float) -> None:
    """Read the worker's output (echoing it) until `needle` shows; keep draining after."""
    seen = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(f"[worker] {line}")
            if needle in line:
                seen.set()

    threading.Thread(target=pump, daemon=True).start()
    if not seen.wait(timeout):
        raise TimeoutError(f"the worker did not log {needle!r} within {timeout:.0f} s")


@dataclass(frozen=True)
class Server:
    url: str
    key: str
    secret: str
    room: str  # a new room's name, made for this test


@contextlib.asynccontextmanager
async def worker_and_room(
    args: list[str], env: dict[str, str], timeout: float, room: str
) -> AsyncIterator[Server]:
    """`avatar worker ARGS dev` registered with the server, and a new room; both gone after."""
    url, key, secret = (
        os.environ[name] for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "commands.cli", "worker", *args, "dev", "--log-level", "info"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        await asyncio.to_thread(_wait_for_line, proc, "registered worker", timeout)
        async with api.LiveKitAPI(url, key, secret) as lk:
            await lk.room.create_room(api.CreateRoomRequest(name=room))
        yield Server(url, key, secret, room)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        async with api.LiveKitAPI(url, key, secret) as lk:
            with contextlib.suppress(api.TwirpError):  # not there if the start failed
                await lk.room.delete_room(api.DeleteRoomRequest(room=room))


async def run_worker_in_room(*, metadata: str, timeout: float) -> None:
    """Start a worker, dispatch it to a new room with `metadata`, join as a caller, and check
    that the avatar publishes its audio and video and that video frames arrive."""
    tag = uuid.uuid4().hex[:8]
    agent_name = f"avatar-test-{tag}"
    env = {"LIVEKIT_AGENT_NAME": agent_name}  # explicit dispatch only
    room = rtc.Room()
    async with worker_and_room([], env, timeout, f"avatar-test-{tag}") as server:
        try:
            async with api.LiveKitAPI(server.url, server.key, server.secret) as lk:
                request = api.CreateAgentDispatchRequest(
                    agent_name=agent_name, room=server.room, metadata=metadata
                )
                await lk.agent_dispatch.create_dispatch(request)
            tracks: dict[str, rtc.Track] = {}
            published = asyncio.Event()

            @room.on("track_subscribed")
            def _on_track(track: rtc.Track, *_: object) -> None:
                tracks[track.name] = track
                if AVATAR_TRACKS <= set(tracks):
                    published.set()

            token = (
                api.AccessToken(server.key, server.secret)
                .with_identity(f"caller-{tag}")
                .with_grants(api.VideoGrants(room_join=True, room=server.room))
                .with_ttl(timedelta(minutes=10))
                .to_jwt()
            )
            await room.connect(server.url, token)
            await asyncio.wait_for(published.wait(), timeout)
            video = rtc.VideoStream(tracks["avatar_video"])
            frames = 0
            async with asyncio.timeout(timeout):
                async for event in video:
                    assert event.frame.width > 0 and event.frame.height > 0
                    frames += 1
                    if frames == 25:  # one second of the avatar
                        break
            await video.aclose()
        finally:
            await room.disconnect()


async def run_agent_with_avatar(*, character: str, timeout: float) -> None:
    """Start an avatar worker (`--role avatar`), then play an agent in a new room that adds our
    avatar with AvatarSession, as a third-party agent would: the avatar must publish video on
    the agent's behalf, and a reply sent as data streams must play and be reported finished."""
    import numpy as np
    from livekit.agents import AgentSession

    from app.avatar_job import PUBLISH_ON_BEHALF
    from app.livekit_avatar import AvatarSession

    tag = uuid.uuid4().hex[:8]
    agent_name, agent = f"avatar-face-{tag}", f"agent-{tag}"
    env = {"LIVEKIT_AVATAR_AGENT_NAME": agent_name}
    room = rtc.Room()
    avatar = AvatarSession(character=character, agent_name=agent_name)
    async with worker_and_room(["--role", "avatar"], env, timeout, f"avatar-test-{tag}") as server:
        try:
            token = (
                api.AccessToken(server.key, server.secret)
                .with_kind("agent")
                .with_identity(agent)
                .with_grants(api.VideoGrants(room_join=True, room=server.room))
                .to_jwt()
            )
            await room.connect(server.url, token)
            session = AgentSession()
            await avatar.start(session, room)
            await avatar.wait_for_join(timeout=timeout)
            (face,) = [p for p in room.remote_participants.values() if p.identity != agent]
            assert face.attributes.get(PUBLISH_ON_BEHALF) == agent
            output = session.output.audio
            assert output is not None
            rate, seconds = 24000, 1.0
            t = np.arange(int(rate * seconds)) / rate
            reply = (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)
            for i in range(0, len(reply), rate // 50):
                piece = reply[i : i + rate // 50]
                await output.capture_frame(rtc.AudioFrame(piece.tobytes(), rate, 1, len(piece)))
            output.flush()
            event = await asyncio.wait_for(output.wait_for_playout(), timeout)
            assert not event.interrupted and abs(event.playback_position - seconds) < 0.1
        finally:
            await avatar.aclose()
            await room.disconnect()
