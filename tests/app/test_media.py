"""mp4 files written with PyAV read back with the frames and audio that went in."""

from __future__ import annotations

import av
import numpy as np
import torch
from PIL import Image

from app.media import save_frames, write_mp4


def test_mp4_holds_every_frame_and_the_audio(tmp_path):
    frames = torch.zeros(50, 64, 96, 3, dtype=torch.uint8)
    frames[:, :, :, 0] = torch.arange(50, dtype=torch.uint8)[:, None, None] * 5  # red ramp
    audio = (0.3 * np.sin(np.arange(32000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    path = tmp_path / "clip.mp4"
    write_mp4(path, frames, 25, audio, 16000)
    assert not list(tmp_path.glob("*.part.mp4"))  # written aside, then moved in place
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert len(decoded) == 50 and decoded[0].shape == (64, 96, 3)
    assert abs(int(decoded[40][..., 0].mean()) - 200) <= 4  # the frames in order
    assert abs(len(sound) / 16000 - 2.0) < 0.1  # 2 s of audio (AAC adds a little priming)


def test_frame_strip(tmp_path):
    frames = torch.randint(0, 255, (30, 16, 16, 3), dtype=torch.uint8)
    save_frames(tmp_path / "strip.png", frames, count=5)
    with Image.open(tmp_path / "strip.png") as im:
        assert im.size == (80, 16)
