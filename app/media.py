"""Video files: mp4 (h264 + aac) with PyAV, and contact sheets of frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

AUDIO_CODEC_RATE = 48000


def write_mp4(
    path: Path | str, frames: torch.Tensor, fps: int, audio: np.ndarray | None, rate: int
) -> None:
    """Written aside and moved in place: an interrupted write (an error, Ctrl-C) leaves no
    file behind.

    Args: frames [T, H, W, 3] uint8; audio [S] float in [-1, 1] at `rate` (or None)."""
    path = Path(path)
    tmp = path.with_suffix(".part.mp4")
    try:
        with av.open(str(tmp), mode="w") as container:
            video = container.add_stream("h264", rate=fps)
            video.width, video.height = frames.shape[2], frames.shape[1]
            video.pix_fmt = "yuv420p"
            video.options = {"crf": "18", "preset": "veryfast"}
            sound = None
            if audio is not None:
                sound = container.add_stream("aac", rate=rate)
                sound.layout = "mono"
            for frame in frames.numpy():
                container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(video.encode())
            if audio is not None and sound is not None:
                pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
                step = 1024
                for start in range(0, len(pcm), step):
                    piece = av.AudioFrame.from_ndarray(
                        pcm[None, start : start + step], format="s16", layout="mono"
                    )
                    piece.sample_rate = rate
                    piece.pts = start
                    piece.time_base = Fraction(1, rate)
                    container.mux(sound.encode(piece))
                container.mux(sound.encode())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def save_frames(path: Path | str, frames: torch.Tensor, *, count: int = 6) -> None:
    """A row of `count` frames spread over the video, as one PNG."""
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    Image.fromarray(torch.cat(list(frames[picks]), dim=1).numpy()).save(path)
