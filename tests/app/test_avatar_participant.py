"""The avatar as its own participant: another agent's AvatarSession (app/livekit_avatar.py) and
our avatar worker's side (app/avatar_participant.py), joined through stand-in rooms."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time

import numpy as np
import pytest
from livekit import api, rtc
from livekit.agents import AgentSession
from livekit.agents.testing import fake_job_context

from app import livekit_avatar
from app.avatar import AvatarVideoGenerator
from app.avatar_job import PUBLISH_ON_BEHALF, AvatarJob, avatar_token
from app.avatar_participant import start_avatar_participant
from app.casting import SPEAKER_ATTRIBUTE, CastRequest
from app.conversation import AGENT_AUDIO_RATE
from app.livekit_avatar import AvatarSession, NamedAudioOutput
from tests.app.avatar.conftest import audio_frames, segment_runs, speech
from tests.app.stand_in_room import StandInRoom, StandInServer

AGENT, AVATAR = "agent-7", "avatar-agent-7"
AGENT_KIND = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
KEY, SECRET = "devkey", "a-secret-at-least-thirty-two-characters"
LIVEKIT = {
    "LIVEKIT_URL": "ws://127.0.0.1:7880",
    "LIVEKIT_API_KEY": KEY,
    "LIVEKIT_API_SECRET": SECRET,
}
STARTED, FINISHED, CLEAR = "lk.playback_started", "lk.playback_finished", "lk.clear_buffer"


def test_the_avatar_token_is_for_one_room_and_publishes_for_the_agent():
    token = avatar_token(
        api_key=KEY, api_secret=SECRET, room="call-1", identity=AVATAR, agent_identity=AGENT
    )
    claims = api.TokenVerifier(KEY, SECRET).verify(token)
    assert claims.identity == AVATAR and claims.kind == "agent"
    assert claims.attributes == {PUBLISH_ON_BEHALF: AGENT}
    assert claims.video.room_join and claims.video.room == "call-1"
    assert not claims.video.room_create and not claims.video.room_admin
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["exp"] - payload["nbf"] == 300  # minutes to join, not a standing pass


def test_the_avatar_job_travels_as_the_dispatchs_metadata():
    job = AvatarJob(CastRequest(scene="duo"), AGENT, AVATAR, "wss://lk.example", "jwt")
    assert AvatarJob.from_metadata(job.to_metadata()) == job
    assert "jwt" not in repr(job)  # never the token in a log line
    with pytest.raises(ValueError, match="needs 'agent'"):
        AvatarJob.from_metadata('{"character": "ada"}')  # a conversation's job
    with pytest.raises(ValueError, match="unknown job metadata keys \\['voice'\\]"):
        bad = json.loads(job.to_metadata()) | {"voice": "x"}
        AvatarJob.from_metadata(json.dumps(bad))


def test_avatar_session_dispatches_the_avatar_and_sends_it_the_audio(monkeypatch):
    for name in LIVEKIT:
        monkeypatch.delenv(name, raising=False)
    dispatched, removed, metrics = [], [], []

    class DispatchService:
        async def create_dispatch(self, request: api.CreateAgentDispatchRequest) -> None:
            dispatched.append(request)

    class RoomService:
        async def remove_participant(self, request: api.RoomParticipantIdentity) -> None:
            removed.append((request.room, request.identity))

    async def scenario() -> None:
        server = StandInServer()
        room = StandInRoom(server, AGENT, name="call-9", kind=AGENT_KIND)
        room.join()
        session = AgentSession()
        avatar = AvatarSession(scene="duo")
        avatar.on("metrics_collected", metrics.append)
        with fake_job_context(room=room) as ctx:
            with pytest.raises(
                ValueError, match="LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET"
            ):
                await avatar.start(session, room)
            services = type("Api", (), {"agent_dispatch": DispatchService(), "room": RoomService()})
            monkeypatch.setattr(type(ctx), "api", property(lambda self: services))
            for name, value in LIVEKIT.items():
                monkeypatch.setenv(name, value)
            await avatar.start(session, room)
            (request,) = dispatched
            assert request.agent_name == "avatar-participant" and request.room == "call-9"
            job = AvatarJob.from_metadata(request.metadata)
            assert job.request == CastRequest(scene="duo") and job.agent_identity == AGENT
            assert job.url == LIVEKIT["LIVEKIT_URL"]
            assert avatar.avatar_identity == job.avatar_identity == f"avatar-{AGENT}"
            claims = api.TokenVerifier(KEY, SECRET).verify(job.token)
            assert claims.identity == job.avatar_identity and claims.video.room == "call-9"
            assert claims.attributes[PUBLISH_ON_BEHALF] == AGENT
            output = session.output.audio
            assert isinstance(output, NamedAudioOutput)
            assert output._destination_identity == job.avatar_identity
            assert output._wait_remote_track == rtc.TrackKind.KIND_VIDEO
            assert output._wait_playback_start  # lk.playback_started times the replies
            # the avatar joins and publishes its video: its join latency is reported
            joined = StandInRoom(server, job.avatar_identity, kind=AGENT_KIND)
            joined.join()
            video = type("Track", (), {"kind": rtc.TrackKind.KIND_VIDEO, "name": "avatar_video"})
            await joined.local_participant.publish_track(video())
            await avatar.wait_for_join(timeout=5)
            (joined_metrics,) = metrics
            assert joined_metrics.metadata.model_provider == livekit_avatar.PROVIDER
            assert 0 <= joined_metrics.avatar_joined_time - joined_metrics.session_started_time < 5
            # when the job shuts down, the avatar participant is removed from the room
            for callback in ctx._shutdown_callbacks:
                await callback("test")
            assert removed == [("call-9", job.avatar_identity)]

    asyncio.run(asyncio.wait_for(scenario(), 30))


class Call:
    """An agent's room and our avatar's, on one stand-in server, the audio going between."""

    def __init__(self, engine, request: CastRequest, speaker=lambda: "") -> None:
        self.engine, self.request, self.speaker = engine, request, speaker
        self.server = StandInServer()
        self.pushed: list[tuple[float, object]] = []  # (time, frame) into the runner's AV sync

    async def __aenter__(self) -> Call:
        agent = StandInRoom(self.server, AGENT, kind=AGENT_KIND)
        agent.join()
        room = StandInRoom(
            self.server, AVATAR, kind=AGENT_KIND, attributes={PUBLISH_ON_BEHALF: AGENT}
        )
        room.join()
        job = AvatarJob(self.request, AGENT, AVATAR, "ws://stand-in", "token")
        self.avatar = await start_avatar_participant(room=room, engine=self.engine, job=job)
        sync = self.avatar.runner.av_sync
        push = sync.push

        async def recording_push(frame, *args, **kwargs):
            self.pushed.append((time.monotonic(), frame))
            return await push(frame, *args, **kwargs)

        sync.push = recording_push
        self.output = NamedAudioOutput(agent, destination_identity=AVATAR, speaker=self.speaker)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.avatar.aclose()

    async def say(self, samples: np.ndarray) -> None:
        """One reply, as fast as an LLM bursts it."""
        for frame in audio_frames(samples, AGENT_AUDIO_RATE):
            await self.output.capture_frame(frame)
        self.output.flush()

    def finished(self) -> list[dict]:
        return [json.loads(rpc.payload) for rpc in self.server.calls(FINISHED)]

    def audio_pushed_after(self, t: float) -> int:
        return sum(isinstance(f, rtc.AudioFrame) for at, f in self.pushed if at > t)


async def run_call(engine, request, scenario, speaker=lambda: "") -> Call:
    async with Call(engine, request, speaker) as call:
        await scenario(call)
    return call


def recorded_frames(monkeypatch) -> list:
    """Every AvatarFrame the generators hand to AvatarRunner, from now on."""
    seen = []
    frames = AvatarVideoGenerator.frames

    async def recording(self):
        async for frame in frames(self):
            seen.append(frame)
            yield frame

    monkeypatch.setattr(AvatarVideoGenerator, "frames", recording)
    return seen


def test_audio_segments_arrive_as_data_streams_and_become_video(micro_engine, monkeypatch):
    frames = recorded_frames(monkeypatch)
    replies = [speech(0.8, AGENT_AUDIO_RATE, seed=1), speech(0.5, AGENT_AUDIO_RATE, seed=2)]

    async def scenario(call: Call) -> None:
        for reply in replies:  # as an AgentSession does: each reply once the last has played
            await call.say(reply)
            event = await call.output.wait_for_playout()
            assert not event.interrupted
            assert event.playback_position == pytest.approx(len(reply) / AGENT_AUDIO_RATE, abs=0.05)
        await asyncio.sleep(0.1)  # the RPC log may trail the playout by an event-loop turn

    call = asyncio.run(asyncio.wait_for(run_call(micro_engine, CastRequest(), scenario), 60))
    server = call.server
    # playback_finished follows each segment exactly once, after its playback_started
    finished = [json.loads(rpc.payload) for rpc in server.calls(FINISHED)]
    assert [f["interrupted"] for f in finished] == [False, False]
    for f, reply in zip(finished, replies, strict=True):
        assert f["playback_position"] == pytest.approx(len(reply) / AGENT_AUDIO_RATE, abs=0.05)
    started = server.calls(STARTED)
    assert len(started) == 2 and started[0].at < server.calls(FINISHED)[0].at < started[1].at
    # every sample sent plays, with the video, in two segments of the avatar's frames
    runs = segment_runs(frames)
    assert len(runs) == 2
    for run, reply in zip(runs, replies, strict=True):
        played = np.concatenate([np.frombuffer(f.audio.data, np.int16) for f in run])
        assert np.array_equal(played[: len(reply)], reply) and not played[len(reply) :].any()
        assert all(f.speaker == 0 for f in run)


def test_clear_buffer_stops_the_video_within_a_chunk_and_reports_the_position(micro_engine):
    chunk_frames = micro_engine.preset.stream.video_frames_per_chunk
    long_reply = speech(4.0, AGENT_AUDIO_RATE, seed=3)

    async def scenario(call: Call) -> None:
        await call.say(long_reply)
        while not call.server.calls(STARTED):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.6)  # the user barges in while the reply plays
        cleared_at = time.monotonic()
        call.output.clear_buffer()
        event = await call.output.wait_for_playout()
        answered = time.monotonic() - cleared_at
        played = event.playback_position
        assert event.interrupted and 0.3 < played < 2.0
        assert answered < 1.0, f"playback_finished {answered:.2f} s after the clear (timeout 2 s)"
        (clear,) = call.server.calls(CLEAR)
        await asyncio.sleep(0.5)
        # the video stops speaking within one chunk of the clear, and nothing more is said
        # to have started playing
        assert call.audio_pushed_after(clear.at) <= chunk_frames
        assert len(call.server.calls(STARTED)) == 1
        # the next reply plays whole, and is reported started and finished once
        next_reply = speech(0.4, AGENT_AUDIO_RATE, seed=4)
        await call.say(next_reply)
        event = await call.output.wait_for_playout()
        assert not event.interrupted
        assert event.playback_position == pytest.approx(
            len(next_reply) / AGENT_AUDIO_RATE, abs=0.05
        )
        await asyncio.sleep(0.1)
        finished = call.finished()
        assert [f["interrupted"] for f in finished] == [True, False]
        assert finished[0]["playback_position"] == pytest.approx(played, abs=0.05)
        assert len(call.server.calls(STARTED)) == 2

    asyncio.run(asyncio.wait_for(run_call(micro_engine, CastRequest(), scenario), 60))


def test_a_scenes_avatar_gives_each_segment_to_the_character_named(micro_engine, monkeypatch):
    frames = recorded_frames(monkeypatch)
    speaking = {"now": "Ada"}

    async def scenario(call: Call) -> None:
        await call.say(speech(1.2, AGENT_AUDIO_RATE, seed=5))
        await call.output.wait_for_playout()
        speaking["now"] = "bo"  # the agent hands over (an id, in any case, also names them)
        await call.say(speech(0.6, AGENT_AUDIO_RATE, seed=6))
        await call.output.wait_for_playout()
        await asyncio.sleep(0.1)
        assert [f["interrupted"] for f in call.finished()] == [False, False]

    request = CastRequest(scene="duo")
    coro = run_call(micro_engine, request, scenario, speaker=lambda: speaking["now"])
    asyncio.run(asyncio.wait_for(coro, 60))
    first, second = segment_runs(frames)
    assert {f.speaker for f in first} == {0} and {f.speaker for f in second} == {1}


def test_each_audio_stream_names_its_speaker():
    async def scenario() -> None:
        server = StandInServer()
        agent = StandInRoom(server, AGENT, kind=AGENT_KIND)
        agent.join()
        avatar = StandInRoom(server, AVATAR, kind=AGENT_KIND)
        avatar.join()
        headers = []
        avatar.register_byte_stream_handler(
            "lk.audio_stream", lambda reader, sender: headers.append(reader.info.attributes)
        )
        await avatar.local_participant.publish_track(
            type("Track", (), {"kind": rtc.TrackKind.KIND_VIDEO, "name": "avatar_video"})()
        )
        speaker = {"now": "Ada"}
        output = NamedAudioOutput(
            agent, destination_identity=AVATAR, speaker=lambda: speaker["now"]
        )
        for name in ("Ada", "Bo"):
            speaker["now"] = name
            await output.capture_frame(audio_frames(speech(0.1, AGENT_AUDIO_RATE))[0])
            output.flush()
        assert [h[SPEAKER_ATTRIBUTE] for h in headers] == ["Ada", "Bo"]
        assert all(h["sample_rate"] == str(AGENT_AUDIO_RATE) for h in headers)

    asyncio.run(asyncio.wait_for(scenario(), 10))


@pytest.mark.skipif(not os.environ.get("LIVEKIT_URL"), reason="needs a LiveKit server: LIVEKIT_URL")
def test_an_agent_adds_our_avatar_in_a_real_room():
    from tests.app.livekit_room import run_agent_with_avatar

    asyncio.run(run_agent_with_avatar(character="ada", timeout=120))
