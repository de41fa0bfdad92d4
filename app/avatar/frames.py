"""What the generator hands out: one video frame with exactly its share of audio."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from livekit import rtc

VideoFormat = Literal["rgba", "rgb24"]
BUFFER_TYPES = {"rgba": rtc.VideoBufferType.RGBA, "rgb24": rtc.VideoBufferType.RGB24}


@dataclass(frozen=True)
class AvatarFrame:
    """One video frame and the audio that plays with it."""

    index: int  # stream index of the video frame (pts = index / fps)
    pts: float  # presentation time, seconds from the stream's start
    video: rtc.VideoFrame  # RGBA or RGB24
    audio: rtc.AudioFrame  # mono, exactly this frame's samples; silence unless in_segment
    speaker: int | None  # character speaking in this frame's chunk; None while all listen
    in_segment: bool  # the audio is a segment's (its last frame zero-padded)
    segment_end: bool  # the last frame of a segment's audio


def video_frames(frames: torch.Tensor, fmt: VideoFormat) -> list[rtc.VideoFrame]:
    """Args: frames: [T, H, W, 3] uint8 RGB."""
    t, h, w, _ = frames.shape
    if fmt == "rgba":
        alpha = torch.full((t, h, w, 1), 255, dtype=torch.uint8)
        frames = torch.cat([frames, alpha], dim=-1)  # [T, H, W, 4]
    pixels = frames.contiguous().numpy()
    return [rtc.VideoFrame(w, h, BUFFER_TYPES[fmt], pixels[i].tobytes()) for i in range(t)]


def audio_frame(samples: np.ndarray, rate: int) -> rtc.AudioFrame:
    """Args: samples: [N] int16 mono."""
    return rtc.AudioFrame(samples.astype(np.int16).tobytes(), rate, 1, len(samples))


def silence(samples: int, rate: int) -> rtc.AudioFrame:
    return rtc.AudioFrame(bytes(2 * samples), rate, 1, samples)
