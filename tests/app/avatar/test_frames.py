"""Video frames and their audio in livekit's buffer formats."""

from __future__ import annotations

import numpy as np
import torch
from livekit import rtc

from app.avatar.frames import audio_frame, silence, video_frames


def test_video_frames_in_rgba_and_rgb24():
    frames = torch.randint(0, 256, (3, 4, 6, 3), dtype=torch.uint8)  # [T, H, W, 3]
    rgba, rgb = video_frames(frames, "rgba"), video_frames(frames, "rgb24")
    assert [f.type for f in rgba] == [rtc.VideoBufferType.RGBA] * 3
    assert [f.type for f in rgb] == [rtc.VideoBufferType.RGB24] * 3
    for t in range(3):
        pixels = np.frombuffer(rgba[t].data, np.uint8).reshape(4, 6, 4)
        assert np.array_equal(pixels[..., :3], frames[t].numpy()) and (pixels[..., 3] == 255).all()
        assert bytes(rgb[t].data) == frames[t].numpy().tobytes()


def test_audio_frames_are_mono_int16():
    samples = np.array([1, -2, 3], dtype=np.int16)
    frame = audio_frame(samples, 24000)
    assert (frame.sample_rate, frame.num_channels, frame.samples_per_channel) == (24000, 1, 3)
    assert np.array_equal(np.frombuffer(frame.data, np.int16), samples)
    assert not np.frombuffer(silence(960, 24000).data, np.int16).any()
