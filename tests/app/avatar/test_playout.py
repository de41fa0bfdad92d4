"""AvatarPlayout with livekit's QueueAudioOutput, in real time: a reply plays out and is
reported finished with its duration; a clear_buffer mid-reply reports the position played."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from livekit.agents.voice.avatar import QueueAudioOutput

from app.avatar.generator import AvatarVideoGenerator
from app.avatar.playout import AvatarPlayout
from tests.app.avatar.conftest import FPS, RATE, audio_frames, pcm, scene_of, speech

TIMEOUT_S = 30


class Played:
    """A sink that remembers what it was given and when."""

    def __init__(self):
        self.frames, self.times = [], []
        self.changed = asyncio.Event()

    def __call__(self, frame) -> None:
        self.frames.append(frame)
        self.times.append(time.perf_counter())
        self.changed.set()

    def segment_seconds(self) -> float:
        return sum(f.audio.duration for f in self.frames if f.in_segment)

    async def until(self, condition) -> None:
        while not condition():
            self.changed.clear()
            await self.changed.wait()


async def call(engine, scenario):
    """Run scenario(audio_out, sink, finished) against a started playout."""
    audio_out = QueueAudioOutput(sample_rate=RATE, wait_playback_start=True)
    finished: asyncio.Queue = asyncio.Queue()
    started: list[float] = []
    audio_out.on("playback_finished", finished.put_nowait)
    audio_out.on("playback_started", lambda ev: started.append(time.perf_counter()))
    gen = AvatarVideoGenerator(engine=engine, scene=scene_of(engine))
    sink = Played()
    playout = AvatarPlayout(audio_recv=audio_out, video_gen=gen, sink=sink)
    await playout.start()
    try:
        return await asyncio.wait_for(scenario(audio_out, sink, finished, started), TIMEOUT_S)
    finally:
        await playout.aclose()
        await gen.aclose()


def test_a_reply_plays_out_and_is_reported_finished(engine):
    reply = speech(1.23, seed=20)

    async def scenario(audio_out, sink, finished, started):
        await sink.until(lambda: len(sink.frames) >= 5)  # listening before the reply
        for frame in audio_frames(reply):
            await audio_out.capture_frame(frame)
        audio_out.flush()
        event = await finished.get()
        return event, sink.segment_seconds(), list(sink.frames), list(sink.times), started

    event, played, frames, times, started = asyncio.run(call(engine, scenario))
    assert not event.interrupted
    assert event.playback_position == played
    assert 1.23 <= event.playback_position < 1.23 + 1 / FPS
    assert len(started) == 1
    segment = [f for f in frames if f.in_segment]
    assert np.array_equal(np.concatenate([pcm(f.audio) for f in segment])[: len(reply)], reply)
    # real time: one frame per 1/fps
    period = (times[-1] - times[0]) / (len(times) - 1)
    assert abs(period - 1 / FPS) < 0.1 / FPS, f"{period * 1000:.1f} ms per frame"


def test_clear_buffer_mid_reply_reports_the_position_played(engine):
    reply = speech(3.0, seed=21)

    async def scenario(audio_out, sink, finished, started):
        for frame in audio_frames(reply):
            await audio_out.capture_frame(frame)
        audio_out.flush()
        await sink.until(lambda: sink.segment_seconds() >= 0.8)
        audio_out.clear_buffer()  # what AgentSession does on barge-in
        event = await finished.get()
        played_at_report = sink.segment_seconds()
        count = len(sink.frames)
        await sink.until(lambda: len(sink.frames) >= count + 25)
        return event, played_at_report, sink.frames[count:]

    event, played, later = asyncio.run(call(engine, scenario))
    assert event.interrupted
    assert 0.8 <= event.playback_position < 0.8 + 2 / FPS
    assert abs(event.playback_position - played) <= 1 / FPS
    assert not any(f.in_segment for f in later)  # nothing of the reply after the barge-in
    assert all(f.speaker is None for f in later)  # listening, generated without a pause
    assert np.array_equal(np.diff([f.index for f in later]), np.ones(len(later) - 1))
