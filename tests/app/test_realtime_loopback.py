"""An AgentSession with the real OpenAI RealtimeModel against a loopback Realtime server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from livekit.agents import Agent, AgentSession
from livekit.agents.voice.avatar import QueueAudioOutput
from livekit.plugins.openai.realtime import RealtimeModel

from tests.app.realtime_server import SAMPLE_RATE, RealtimeServer
from tests.app.session_io import Playout, UserAudio, voiced

VIDEO_FRAME_S = 1 / 25  # one avatar video frame
REPLY_S = 3.0
MIC_RATE = 48000  # the plugin resamples to 24 kHz, as for a browser microphone


@dataclass
class Call:
    server: RealtimeServer
    session: AgentSession
    user: UserAudio
    audio: QueueAudioOutput
    playout: Playout


@contextlib.asynccontextmanager
async def call(**server_options) -> AsyncIterator[Call]:
    server = RealtimeServer(reply_audio=voiced(REPLY_S, rate=SAMPLE_RATE), **server_options)
    await server.start()
    model = RealtimeModel(base_url=server.base_url, api_key="test")
    session = AgentSession(llm=model)
    user = UserAudio(sample_rate=MIC_RATE)
    audio = QueueAudioOutput(wait_playback_start=True)
    session.input.audio = user
    session.output.audio = audio
    playout = Playout(audio=audio)
    await playout.start()  # the avatar starts before the session, as in the app
    await session.start(agent=Agent(instructions="You are a friendly test character."))
    try:
        yield Call(server=server, session=session, user=user, audio=audio, playout=playout)
    finally:
        await session.aclose()
        await playout.aclose()
        await model.aclose()
        await server.aclose()


def assistant_messages(session: AgentSession) -> list:
    return [m for m in session.history.messages() if m.role == "assistant"]


def reply_item_id(server: RealtimeServer, n: int = 1) -> str:
    added = [e for e in server.sent if e["type"] == "response.output_item.added"]
    return added[n - 1]["item"]["id"]


def test_full_turn_user_audio_in_reply_audio_out():
    async def run() -> None:
        async with call() as c:
            assert (await c.server.wait_for("session.update"))["session"]["type"] == "realtime"
            assert c.server.handshakes == [
                {"model": "gpt-realtime", "authorization": "Bearer test"}
            ]
            c.user.say(voiced(1.2, rate=MIC_RATE))
            await c.playout.wait_until(lambda: len(c.playout.segments) == 1, timeout=20)
            seg = c.playout.segments[0]
            # the whole 3 s reply reached the output and played at real time
            assert abs(seg.played_s - REPLY_S) < 1e-3 and not seg.interrupted
            assert abs((seg.ended_at - seg.started_at) - REPLY_S) < 0.15
            # playback finished reached the session: the reply is history, not interrupted
            await wait_for(lambda: len(assistant_messages(c.session)) == 1)
            (msg,) = assistant_messages(c.session)
            assert msg.id == reply_item_id(c.server) and not msg.interrupted
            assert msg.text_content == c.server.reply_text
            assert c.session.agent_state == "listening"
            # user audio reached the server: everything the microphone sent, at 24 kHz, less
            # what the plugin still buffers (it appends in 100 ms chunks) and the resampler delay
            c.user.mute()
            await asyncio.sleep(0.3)
            sent = c.user.sent_samples * SAMPLE_RATE / MIC_RATE
            received = c.server.input_audio_bytes / 2
            assert 0 <= sent - received < 0.1 * SAMPLE_RATE + 512, (sent, received)
            assert c.server.received("input_audio_buffer.append")
            assert not c.server.received("conversation.item.truncate")

    asyncio.run(run())


def test_barge_in_truncates_at_the_played_position():
    async def run() -> None:
        async with call(pace=1.5) as c:  # the reply still streams when the user cuts in
            c.user.say(voiced(1.0, rate=MIC_RATE))
            await c.playout.wait_until(lambda: c.playout.position >= 1.2, timeout=20)
            c.server.reply_audio = voiced(0.5, rate=SAMPLE_RATE)  # for the next turn
            await c.server.speech_started()  # the user talks over the character
            truncate = await c.server.wait_for("conversation.item.truncate")
            cut = c.playout.segments[0]
            assert c.playout.cleared >= 1 and cut.interrupted
            assert 1.2 <= cut.played_s < 1.2 + 0.5  # it stopped at the barge-in
            assert truncate["item_id"] == reply_item_id(c.server)
            assert truncate["content_index"] == 0
            # the model forgets what the user did not hear: the position reported, which is
            # the audio played out (within one video frame)
            assert abs(truncate["audio_end_ms"] / 1000 - cut.played_s) < 1e-3
            played = cut.ended_at - cut.started_at - cut.gaps_s
            assert abs(truncate["audio_end_ms"] / 1000 - played) < VIDEO_FRAME_S
            await wait_for(lambda: len(assistant_messages(c.session)) == 1)
            assert assistant_messages(c.session)[0].interrupted
            done = next(e for e in c.server.sent if e["type"] == "response.done")
            assert done["response"]["status"] == "cancelled"  # cut while it streamed
            # the user's turn ends (server VAD), and the next reply plays whole, with nothing
            # of the cut one left in the queue
            await c.playout.wait_until(lambda: len(c.playout.segments) == 2, timeout=20)
            answer = c.playout.segments[1]
            assert abs(answer.played_s - 0.5) < 1e-3 and not answer.interrupted
            assert reply_item_id(c.server, 2) != truncate["item_id"]

    asyncio.run(run())


async def wait_for(predicate, *, timeout: float = 5.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(step)
