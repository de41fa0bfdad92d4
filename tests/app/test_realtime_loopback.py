"""The whole conversation chain against a loopback OpenAI Realtime server: user audio ->
RealtimeModel -> AgentSession -> QueueAudioOutput -> avatar generator -> frames played at
real time by AvatarPlayout, which reports playback back to the session."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from app.avatar import AvatarEngine, AvatarFrame
from app.casting import Casting
from app.conversation import Conversation, prepare_conversation, start_local
from llm_bridge.persona import Persona
from tests.app.realtime_server import SAMPLE_RATE, RealtimeServer
from tests.app.session_io import PlayedFrames, UserAudio, assert_av_pairing, voiced, wait_for
from tests.conftest import MICRO_STREAM

REPLY_S = 3.0
MIC_RATE = 48000  # the plugin resamples to 24 kHz, as for a browser microphone
FPS = MICRO_STREAM.fps
FRAME_S = 1 / FPS  # one video frame
CHUNK = MICRO_STREAM.video_frames_per_chunk
PERSONA = Persona(name="Tess", instructions="You are a friendly test character.")


@dataclass
class Call:
    server: RealtimeServer
    conversation: Conversation
    user: UserAudio
    frames: PlayedFrames = field(default_factory=PlayedFrames)
    cleared_at: list[float] = field(default_factory=list)  # clear_buffer events

    def played(self, since: float = 0.0) -> list[AvatarFrame]:
        return self.frames.since(since)

    def segments(self) -> list[list[AvatarFrame]]:
        return self.frames.segments()


@contextlib.asynccontextmanager
async def call(engine: AvatarEngine, **server_options) -> AsyncIterator[Call]:
    server = RealtimeServer(reply_audio=voiced(REPLY_S, rate=SAMPLE_RATE), **server_options)
    await server.start()
    image = np.full((96, 96, 3), 128, dtype=np.uint8)
    casting = Casting(personas=(PERSONA,), picture=image, face_boxes=((0.2, 0.1, 0.8, 0.9),))
    conv = await prepare_conversation(
        engine=engine, casting=casting, api_key="test", base_url=server.base_url
    )
    c = Call(server=server, conversation=conv, user=UserAudio(sample_rate=MIC_RATE))
    conv.audio.on("clear_buffer", lambda: c.cleared_at.append(time.monotonic()))
    await start_local(conv, user_audio=c.user, sink=c.frames)
    try:
        yield c
    finally:
        await conv.aclose()
        await server.aclose()


def assistant_messages(c: Call) -> list:
    return [m for m in c.conversation.session.history.messages() if m.role == "assistant"]


def reply_item_id(server: RealtimeServer, n: int = 1) -> str:
    added = [e for e in server.sent if e["type"] == "response.output_item.added"]
    return added[n - 1]["item"]["id"]


def test_full_turn_user_audio_to_avatar_frames(micro_engine):
    async def run() -> None:
        async with call(micro_engine) as c:
            session_update = await c.server.wait_for("session.update")
            assert session_update["session"]["audio"]["output"]["voice"] == PERSONA.openai_voice
            assert c.server.handshakes == [
                {"model": "gpt-realtime", "authorization": "Bearer test"}
            ]
            await wait_for(lambda: len(c.frames) >= FPS // 2)  # the character listens, moving
            assert not any(f.in_segment or f.speaker is not None for f in c.played())
            c.user.say(voiced(1.2, rate=MIC_RATE))
            await wait_for(
                lambda: len(c.segments()) == 1 and c.segments()[0][-1].segment_end, timeout=20
            )
            ended_at = time.monotonic()
            (reply,) = c.segments()
            # the whole 3 s reply is on the frames, the character speaking throughout
            assert len(reply) == round(REPLY_S * FPS)
            assert all(f.speaker == 0 for f in reply)
            audio = np.concatenate([np.frombuffer(f.audio.data, np.int16) for f in reply])
            assert np.array_equal(audio, voiced(REPLY_S, rate=SAMPLE_RATE))
            # playback finished reached the session: the reply is history, not interrupted
            await wait_for(lambda: len(assistant_messages(c)) == 1)
            (msg,) = assistant_messages(c)
            assert msg.id == reply_item_id(c.server) and not msg.interrupted
            assert c.conversation.session.agent_state == "listening"
            # then the character listens again: a chunk on, every frame is a listening one
            await wait_for(lambda: len(c.played(ended_at)) >= 2 * CHUNK, timeout=10)
            after = c.played(ended_at)[CHUNK:]
            assert all(f.speaker is None and not f.in_segment for f in after)
            assert not any(np.frombuffer(f.audio.data, np.int16).any() for f in after)
            pixels = {bytes(f.video.data) for f in after}
            assert len(pixels) > 1  # it moves: generated, not a frozen frame
            assert_av_pairing(c.played(), rate=SAMPLE_RATE, fps=FPS)
            # user audio reached the server: everything the microphone sent, at 24 kHz, less
            # what the plugin still buffers (it appends in 100 ms chunks) and the resampler delay
            c.user.mute()
            await asyncio.sleep(0.3)
            sent = c.user.sent_samples * SAMPLE_RATE / MIC_RATE
            received = c.server.input_audio_bytes / 2
            assert 0 <= sent - received < 0.1 * SAMPLE_RATE + 512, (sent, received)
            assert not c.server.received("conversation.item.truncate")

    asyncio.run(run())


def test_barge_in_silences_the_avatar_and_truncates_at_the_played_position(micro_engine):
    async def run() -> None:
        async with call(
            micro_engine, pace=1.0
        ) as c:  # the reply still streams when the user cuts in
            c.user.say(voiced(1.0, rate=MIC_RATE))
            spoken = lambda: sum(f.in_segment for f in c.played())  # noqa: E731
            await wait_for(lambda: spoken() >= 1.2 * FPS, timeout=20)
            c.server.reply_audio = voiced(0.5, rate=SAMPLE_RATE)  # for the next turn
            await c.server.speech_started()  # the user talks over the character
            truncate = await c.server.wait_for("conversation.item.truncate")
            assert c.cleared_at, "clear_buffer never fired"
            cleared = c.cleared_at[0]
            before = [f for t, f in c.frames.timed if t < cleared]
            played_s = sum(f.audio.duration for f in before if f.in_segment)
            assert 1.2 <= played_s < 1.2 + 0.5  # it stopped at the barge-in
            assert truncate["item_id"] == reply_item_id(c.server)
            # the model forgets what the user did not hear: within one video frame of it
            assert abs(truncate["audio_end_ms"] / 1000 - played_s) < FRAME_S
            await wait_for(lambda: len(assistant_messages(c)) == 1)
            assert assistant_messages(c)[0].interrupted
            done = next(e for e in c.server.sent if e["type"] == "response.done")
            assert done["response"]["status"] == "cancelled"  # cut while it streamed
            # the user's turn ends (server VAD) and the next reply plays whole; between the
            # two, from the next frame on, the character listens: the next chunk is silent
            await wait_for(lambda: len(c.segments()) == 2 and c.segments()[1][-1].segment_end)
            after = c.played(cleared)
            gap = after[: next(i for i, f in enumerate(after) if f.in_segment)]
            assert len(gap) >= CHUNK, len(gap)  # at least the chunk after the clear
            assert all(f.speaker is None and not f.in_segment for f in gap)
            answer = c.segments()[1]
            assert len(answer) == math.ceil(0.5 * FPS) and all(f.speaker == 0 for f in answer)
            assert reply_item_id(c.server, 2) != truncate["item_id"]
            assert_av_pairing(c.played(), rate=SAMPLE_RATE, fps=FPS, contiguous=False)

    asyncio.run(run())
