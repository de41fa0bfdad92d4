"""Wan's Resample: spatial x2 up/down sampling, optionally also x2 in time, causally.

The first frame of a stream is special in time: the encoder keeps it as its own latent frame
and the decoder expands it to one frame, never two. That is what makes latent frame 0 decode
to 1 video frame and every later latent frame to 4.
"""

from __future__ import annotations

import torch
from torch import nn

from avatar_engine.config import VAE_KERNEL
from avatar_engine.vae.layers import Cache, CausalConv3d, conv2d_frames

TIME_FACTOR = 2  # frames per input frame (upsample) or input frames per frame (downsample)
SPACE_FACTOR = 2


def _phase_taps(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """Split a 3-tap kernel axis into the 2 output phases of a nearest x2 upsample.

    Output pixel 2i reads input pixels (i-1, i, i) with taps (0, 1, 2), and 2i+1 reads
    (i, i, i+1); on the 3-pixel input window around i that is (w0, w1 + w2, 0) and
    (0, w0 + w1, w2).

    Returns:
        [2, *weight.shape]: the even and odd phase kernels over input offsets -1, 0, 1.
    """
    w0, w1, w2 = weight.unbind(dim)
    zero = torch.zeros_like(w0)
    even = torch.stack([w0, w1 + w2, zero], dim)
    odd = torch.stack([zero, w0 + w1, w2], dim)
    return torch.stack([even, odd])


class Upsample(nn.Module):
    """Nearest x2 upsample then a 3x3 conv that halves the width; with `temporal`, first a causal
    time conv that makes every frame after the stream's first into two."""

    def __init__(self, dim: int, *, temporal: bool):
        super().__init__()
        # Indexed like Wan's nn.Sequential (its parameters are resample.1.*); forward does
        # both steps at once (_upsample_conv).
        self.resample = nn.Sequential(
            nn.Upsample(scale_factor=float(SPACE_FACTOR), mode="nearest-exact"),
            nn.Conv2d(dim, dim // 2, VAE_KERNEL, padding=VAE_KERNEL // 2),
        )
        self.time_conv = (
            CausalConv3d(dim, dim * TIME_FACTOR, (VAE_KERNEL, 1, 1)) if temporal else None
        )

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, Cache]:
        """
        Args:
            x: [T, B, H, W, C]
            cache: the time conv's past frames; None at the start of a stream.

        Returns:
            [T', B, 2H, 2W, C/2] with T' = 2T (1 + 2(T - 1) for a stream's first chunk).
        """
        if self.time_conv is not None:
            x, cache = self._double_frames(x, cache)
        return self._upsample_conv(x), cache

    def _upsample_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest x2 then the 3x3 conv, computed at the low resolution: each of the 4 output
        pixels of an input pixel sees a fixed mix of its 3x3 neighbourhood, so one conv with
        4x the outputs and a pixel shuffle give the same result without the upsampled input.

        Args:
            x: [T, B, H, W, C]

        Returns:
            [T, B, 2H, 2W, C']
        """
        conv = self.resample[1]
        cout = conv.out_channels
        rows = _phase_taps(conv.weight, dim=-2)  # [a, C', C, 3, 3]
        weight = _phase_taps(rows, dim=-1).transpose(0, 1).flatten(0, 2)  # [(a, b, C'), C, 3, 3]
        bias = conv.bias.repeat(SPACE_FACTOR**2)
        out = conv2d_frames(x, weight, bias, padding=conv.padding)  # [T, B, H, W, 4C']
        t, b, h, w, _ = out.shape
        out = out.view(t, b, h, w, SPACE_FACTOR, SPACE_FACTOR, cout)  # [T, B, H, W, a, b, C']
        out = out.permute(0, 1, 2, 4, 3, 5, 6)  # [T, B, H, a, W, b, C']
        return out.reshape(t, b, SPACE_FACTOR * h, SPACE_FACTOR * w, cout)

    def _double_frames(self, x: torch.Tensor, cache: Cache) -> tuple[torch.Tensor, Cache]:
        first = x[:0]
        if cache is None:
            # The stream's first frame passes through; its successors see zeros before them.
            first, x = x[:1], x[1:]
            cache = x.new_zeros((self.time_conv.context, *first.shape[1:]))
        if not len(x):
            return first, cache
        t, b, h, w, c = x.shape
        pairs, cache = self.time_conv(x, cache)  # [T, B, H, W, 2C]
        pairs = pairs.view(t, b, h, w, TIME_FACTOR, c).permute(0, 4, 1, 2, 3, 5)  # [T,2,B,H,W,C]
        return _after(first, pairs.reshape(t * TIME_FACTOR, b, h, w, c)), cache


class Downsample(nn.Module):
    """A stride-2 3x3 conv (padded right and bottom); with `temporal`, then a causal stride-2
    time conv that keeps the stream's first frame and halves the frames after it."""

    def __init__(self, dim: int, *, temporal: bool):
        super().__init__()
        # Indexed like Wan's nn.Sequential (its parameters are resample.1.*).
        self.resample = nn.Sequential(
            nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, VAE_KERNEL, stride=SPACE_FACTOR)
        )
        self.time_conv = (
            CausalConv3d(dim, dim, (VAE_KERNEL, 1, 1), time_stride=TIME_FACTOR)
            if temporal
            else None
        )

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, Cache]:
        """
        Args:
            x: [T, B, H, W, C], H and W even.
            cache: the time conv's past frames; None at the start of a stream.

        Returns:
            [T', B, H/2, W/2, C] with T' = T/2 (1 + (T - 1)/2 for a stream's first chunk).
        """
        conv = self.resample[1]
        padded = nn.functional.pad(x, (0, 0, 0, 1, 0, 1))  # [T, B, H+1, W+1, C], as ZeroPad2d
        x = conv2d_frames(padded, conv.weight, conv.bias, stride=SPACE_FACTOR)  # [T,B,H/2,W/2,C]
        if self.time_conv is None:
            return x, cache
        first = x[:0]
        if cache is None:
            # The first frame passes through and opens the window of the next output.
            first, cache, x = x[:1], x[:1], x[1:]
        if not len(x):
            return first, cache
        x, cache = self.time_conv(x, cache)
        return _after(first, x), cache


def _after(first: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """Frames `rest` preceded by `first` (the stream's first frame, or nothing)."""
    return torch.cat([first, rest]) if len(first) else rest
