"""The worker's policy, seen through the generator: speaking follows the segments and
listening is generated; clear_buffer drops what was not played and the next chunk is silent;
set_speaker switches at a chunk boundary; a reply coming in real time starts later rather than
stalling."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from livekit.agents.voice.avatar import AudioSegmentEnd

from app.avatar.generator import AvatarVideoGenerator
from tests.app.avatar.conftest import (
    PER_FRAME,
    assert_plays_exactly,
    audio_frames,
    consume,
    pcm,
    push_segment,
    run,
    scene_of,
    segment_runs,
    speech,
)


def test_speaking_then_generated_listening(engine):
    audio = speech(1.5, seed=5)

    async def session() -> list:
        gen = AvatarVideoGenerator(engine=engine, scene=scene_of(engine))
        await push_segment(gen, audio)
        try:
            return await consume(gen, 120)
        finally:
            await gen.aclose()

    frames = run(session())
    (segment,) = segment_runs(frames)
    assert all(f.speaker == 0 for f in segment)
    # after the chunk holding the segment's end, every chunk listens
    next_chunk = engine.geometry.chunk_of_frame(segment[-1].index) + 1
    after = [f for f in frames if f.index >= engine.geometry.chunk_start_frame(next_chunk)]
    assert len(after) >= 2 * engine.preset.stream.video_frames_per_chunk
    assert all(f.speaker is None and not f.in_segment for f in after)
    # the model moves them: no frame repeats another, not even its neighbour
    pictures = [bytes(f.video.data) for f in after]
    assert len(set(pictures)) == len(pictures)


def test_clear_buffer_drops_unplayed_frames_and_the_next_chunk_is_silent(spy_engine):
    engine, spy = spy_engine, spy_engine.runtime
    geometry = engine.geometry
    first, second = speech(5.0, seed=6), speech(1.0, seed=7)

    async def session() -> tuple[list, list]:
        gen = AvatarVideoGenerator(engine=engine, scene=scene_of(engine))
        await push_segment(gen, first)
        try:
            before = []
            async for f in gen.frames():
                before.append(f)
                # mid-chunk, well into the segment: the rest of the chunk is queued
                if f.in_segment and f.index == geometry.chunk_start_frame(4) + 3:
                    break
            await gen.clear_buffer()
            await push_segment(gen, second)  # the next reply comes at once
            return before, await consume(gen, 80)
        finally:
            await gen.aclose()

    before, after = run(session())
    resumed = after[0].index
    assert resumed > before[-1].index + 1  # the queued frames were dropped
    chunk = geometry.chunk_of_frame(resumed)
    assert resumed == geometry.chunk_start_frame(chunk)  # a fresh chunk, not a stale one
    assert not spy.speaking[chunk].any()  # the first chunk after the clear is silent
    assert spy.speaking[chunk - 1].any()  # (the one before it, made but never shown, spoke)
    assert np.array_equal(np.diff([f.index for f in after]), np.ones(len(after) - 1))
    silent = [f for f in after if geometry.chunk_of_frame(f.index) == chunk]
    assert all(f.speaker is None and not f.in_segment for f in silent)
    # nothing of the first reply plays again; the second plays whole, speaking
    (segment,) = segment_runs(after)
    assert_plays_exactly(np.concatenate([pcm(f.audio) for f in segment]), second, PER_FRAME)
    assert all(f.speaker == 0 for f in segment)


def test_set_speaker_switches_at_the_next_chunk_boundary(spy_engine):
    engine, spy = spy_engine, spy_engine.runtime
    geometry = engine.geometry
    submitted_at_call = []

    async def session() -> list:
        gen = AvatarVideoGenerator(engine=engine, scene=scene_of(engine, characters=2))
        await push_segment(gen, speech(6.0, seed=8))

        async def hand_off(frame) -> None:
            if frame.index == 40:
                submitted_at_call.append(len(spy.speaking))
                gen.set_speaker(1)

        try:
            return await consume(gen, 120, hand_off)
        finally:
            await gen.aclose()

    frames = run(session())
    flags = [tuple(s[0].tolist()) for s in spy.speaking]
    switch = flags.index((False, True))
    assert switch in (submitted_at_call[0], submitted_at_call[0] + 1)
    assert set(flags[1:switch]) == {(True, False)}  # chunk 0 may come before the audio
    assert set(flags[switch : switch + 5]) == {(False, True)}
    # the listener's features are zeros (its tokens become its silence embedding)
    assert not spy.features[switch][0, 0].any() and spy.features[switch][0, 1].any()
    assert not spy.features[switch - 1][0, 1].any() and spy.features[switch - 1][0, 0].any()
    speakers = [f.speaker for f in frames if f.in_segment]
    handoff = next(f.index for f in frames if f.speaker == 1)
    assert handoff == geometry.chunk_start_frame(switch)
    assert set(speakers[: speakers.index(1)]) == {0} and set(speakers[speakers.index(1) :]) == {1}
    with pytest.raises(ValueError, match="not one of the scene's 2 characters"):
        AvatarVideoGenerator(engine=engine, scene=scene_of(engine, 2)).set_speaker(2)


def test_a_reply_arriving_in_real_time_starts_later_and_never_stalls(engine):
    """Audio comes exactly as fast as it plays: the segment starts once its first chunk's
    audio (look-ahead included) is in, at a chunk boundary, and then never waits again."""
    reply, pushed, start_frame = speech(2.5, seed=12), [0], 10

    async def session() -> list:
        gen = AvatarVideoGenerator(engine=engine, scene=scene_of(engine))

        async def feed(frame) -> None:  # audio up to the frame being played, no further
            if frame.index < start_frame or pushed[0] == len(reply):
                return
            until = min(len(reply), (frame.index + 1 - start_frame) * PER_FRAME)
            for f in audio_frames(reply[pushed[0] : until]):
                await gen.push_audio(f)
            pushed[0] = until
            if until == len(reply):
                await gen.push_audio(AudioSegmentEnd())

        try:  # a stall would wait for audio that only comes with the next frame: a deadlock
            return await asyncio.wait_for(consume(gen, 200, feed), 20)
        finally:
            await gen.aclose()

    frames = run(session())
    assert [f.index for f in frames] == list(range(200))
    (segment,) = segment_runs(frames)
    assert_plays_exactly(np.concatenate([pcm(f.audio) for f in segment]), reply, PER_FRAME)
    geometry, stream = engine.geometry, engine.preset.stream
    first = segment[0].index
    assert first == geometry.chunk_start_frame(geometry.chunk_of_frame(first))
    needs = stream.video_frames_per_chunk + geometry.lookahead_frames  # its first chunk's audio
    assert start_frame + needs <= first <= start_frame + needs + 3 * stream.video_frames_per_chunk


def test_a_reply_slower_than_real_time_makes_the_video_wait_not_skip(engine, caplog):
    """Mid-reply the audio stops coming for a while: frames pause (the consumer's clock
    restarts), and the reply then plays on from where it was, bit-exact."""
    reply = speech(3.0, seed=14)
    half = len(reply) // 2

    async def session() -> list:
        gen = AvatarVideoGenerator(engine=engine, scene=scene_of(engine))

        async def late_reply() -> None:
            for f in audio_frames(reply[:half]):
                await gen.push_audio(f)
            await asyncio.sleep(1.0)  # meanwhile the frames catch up with the audio
            await push_segment(gen, reply[half:])

        pushing = asyncio.create_task(late_reply())
        try:
            return await consume(gen, 120)
        finally:
            await pushing
            await gen.aclose()

    with caplog.at_level(logging.WARNING, logger="app.avatar.engine_thread"):
        frames = run(session())
    assert "avatar audio late: video waits" in caplog.messages
    assert [f.index for f in frames] == list(range(120))
    (segment,) = segment_runs(frames)
    assert_plays_exactly(np.concatenate([pcm(f.audio) for f in segment]), reply, PER_FRAME)
