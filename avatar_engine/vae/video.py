"""RGB bytes to the VAE's range and back."""

from __future__ import annotations

import torch

UINT8_MAX = 255


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """Decoder output to RGB bytes, one frame sequence per batch item.

    Args:
        video: [B, 3, T, H, W] in [-1, 1] (values outside are clamped).

    Returns:
        [B, T, H, W, 3] uint8 on video's device; index b for one stream's frames.
    """
    rgb = video.permute(0, 2, 3, 4, 1).float()  # [B, T, H, W, 3]
    scaled = (rgb + 1.0) * (UINT8_MAX / 2)
    return scaled.round_().clamp_(0, UINT8_MAX).to(torch.uint8)


def from_uint8_frames(frames: torch.Tensor) -> torch.Tensor:
    """RGB bytes to the VAE's input range (the inverse of to_uint8_frames' scaling).

    Args:
        frames: [..., H, W, 3] uint8.

    Returns:
        [..., 3, H, W] float32 in [-1, 1].
    """
    return frames.movedim(-1, -3).float() / (UINT8_MAX / 2) - 1.0
