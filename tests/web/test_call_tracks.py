"""The avatar's frames as aiortc tracks: pts count frames sequentially on one clock, even when
a barge-in makes the stream's frame indices jump; audio goes out in 20 ms frames at 48 kHz."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import numpy as np
import pytest
import torch
from aiortc.mediastreams import MediaStreamError

from app.avatar.frames import AvatarFrame, audio_frame, video_frames
from app.local_call.tracks import OPUS_FRAME, OPUS_RATE, VIDEO_CLOCK, AvatarTracks
from tests.app.session_io import voiced

FPS, RATE, SIZE = 25, 24000, 16


def avatar_frames(indices: list[int]) -> list[AvatarFrame]:
    """Frames with a distinct picture each and speech-like audio, at the given stream indices."""
    pictures = torch.arange(len(indices), dtype=torch.uint8)[:, None, None, None]
    pictures = pictures.expand(len(indices), SIZE, SIZE, 3)  # [T, H, W, 3]
    speech = voiced(len(indices) / FPS, rate=RATE).reshape(len(indices), -1)  # [T, N]
    return [
        AvatarFrame(i, i / FPS, v, audio_frame(a, RATE), 0, True, False)
        for i, v, a in zip(indices, video_frames(pictures, "rgba"), speech, strict=True)
    ]


def drain(track, count: int) -> list:
    async def take():
        return [await track.recv() for _ in range(count)]

    return asyncio.run(take())


def test_pts_count_frames_across_a_jump_in_indices_and_audio_keeps_pace():
    tracks = AvatarTracks(fps=FPS)
    frames = avatar_frames([0, 1, 2, 3, 4, 5, 40, 41, 42, 43])  # frames 6..39 were dropped
    for frame in frames:
        tracks.push(frame)

    video = drain(tracks.video, len(frames))
    assert [f.pts for f in video] == [n * VIDEO_CLOCK // FPS for n in range(len(frames))]
    assert all(f.time_base == Fraction(1, VIDEO_CLOCK) for f in video)
    # each picture is the one pushed, in order
    assert [int(f.to_ndarray(format="rgb24")[0, 0, 0]) for f in video] == list(range(len(frames)))

    # 10 frames of 40 ms: 400 ms of audio, so 20 frames of 20 ms, the resampler holding back
    # at most a few ms of filter delay
    audio = drain(tracks.audio, 19)
    assert all(f.sample_rate == OPUS_RATE and f.samples == OPUS_FRAME for f in audio)
    assert [f.pts for f in audio] == [n * OPUS_FRAME for n in range(19)]
    assert all(f.layout.name == "mono" for f in audio)
    sent = np.concatenate([f.to_ndarray()[0] for f in audio]).astype(np.float64)
    pushed = np.concatenate([np.frombuffer(f.audio.data, np.int16) for f in frames])
    # the same sound at twice the rate: equal loudness, and the pushed speech is in it
    assert np.sqrt(np.mean(sent**2)) == pytest.approx(np.sqrt(np.mean(pushed**2.0)), rel=0.05)


def test_a_stopped_track_ends_a_waiting_receiver():
    tracks = AvatarTracks(fps=FPS)

    async def wait_then_stop():
        waiting = asyncio.ensure_future(tracks.video.recv())
        await asyncio.sleep(0.01)
        tracks.stop()
        with pytest.raises(MediaStreamError):
            await waiting

    asyncio.run(wait_then_stop())


def test_a_track_nobody_reads_keeps_one_second_dropping_the_oldest():
    tracks = AvatarTracks(fps=FPS)
    for frame in avatar_frames(list(range(3 * FPS))):
        tracks.push(frame)
    video = drain(tracks.video, FPS)
    assert video[0].pts == 2 * FPS * VIDEO_CLOCK // FPS  # the last second's frames are kept
