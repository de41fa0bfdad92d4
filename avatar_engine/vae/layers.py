"""Causal building blocks of the Wan VAE, working on the frame layout.

Frame layout: a contiguous [T, B, H, W, C] tensor (time-major, channels last). Every op of the
VAE except the causal time convs works on each frame alone, so frames flatten into a batch of
images for free, and a causal conv is a sum of 2D convs over time-shifted frame slices. On CPU
that is several times faster than torch's Conv3d at the narrow widths of the tiny preset.

Streaming: every causal part takes and returns its cache, `forward(x, cache) -> (x, cache)`.
A cache is None at the start of a stream and afterwards holds the past input frames each causal
conv needs, nested like the modules (see Cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import torch
import torch.nn.functional as F
from torch import nn

from avatar_engine.config import VAE_KERNEL

Cache: TypeAlias = "torch.Tensor | tuple[Cache, ...] | None"

# Causal convs with at most this many outputs over all time taps convolve every frame with all
# taps at once (see CausalConv3d._all_taps). Measured on CPU for the tiny preset.
STACKED_TAPS_MAX_WIDTH = 16
# ... padded with zero kernels to a multiple of this many outputs: oneDNN's fp32 CPU convs are
# up to 1.5x faster at such widths (measured: 4 -> 12 channels is slower than 4 -> 16).
STACKED_TAPS_WIDTH_MULTIPLE = 8
NORM_EPS = 1e-12  # floor on a pixel's channel norm (F.normalize's, which Wan uses)


def video_to_frames(video: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> contiguous [T, B, H, W, C]."""
    return video.permute(2, 0, 3, 4, 1).contiguous()


def frames_to_video(frames: torch.Tensor) -> torch.Tensor:
    """[T, B, H, W, C] -> [B, C, T, H, W] (a view)."""
    return frames.permute(1, 4, 0, 2, 3)


def conv2d_frames(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """A 2D conv applied to every frame.

    Args:
        x: [..., H, W, Cin] frames.
        weight: [Cout, Cin, kh, kw].

    Returns:
        [..., H', W', Cout]
    """
    if weight.shape[-2:] == (1, 1) and stride == 1:
        return F.linear(x, weight.flatten(1), bias)  # a pointwise conv is a matmul over C
    lead = x.shape[:-3]
    images = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)  # [N, Cin, H, W] channels-last
    out = F.conv2d(images, weight, bias, stride=stride, padding=padding)
    out = out.permute(0, 2, 3, 1)  # [N, H', W', Cout]
    return out.reshape(*lead, *out.shape[1:])


class CausalConv3d(nn.Conv3d):
    """Wan's causal Conv3d: time is padded on the past side only, space symmetrically.

    Computed as 2D convs of time-shifted frames: one per time tap, or for narrow layers one conv
    with all taps' kernels (STACKED_TAPS_MAX_WIDTH). The weight keeps Conv3d's
    [Cout, Cin, kt, kh, kw] layout, so checkpoints load unchanged.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        kernel: int | tuple[int, int, int],
        *,
        time_stride: int = 1,
    ):
        kt, kh, kw = (kernel,) * 3 if isinstance(kernel, int) else kernel
        super().__init__(in_dim, out_dim, (kt, kh, kw), stride=(time_stride, 1, 1))
        self.space_padding = (kh // 2, kw // 2)
        self.context = kt - 1  # past frames the first output of a stream sees as zeros

    def forward(
        self, x: torch.Tensor, cache: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            x: [T, B, H, W, Cin] new input frames.
            cache: [Tc, B, H, W, Cin] input frames carried over from the previous call; None at
                the start of a stream (zeros, as Wan pads).

        Returns:
            [T', B, H, W, Cout] output frames and the new cache (None for a 1-frame kernel).
        """
        kt, st = self.kernel_size[0], self.stride[0]
        if kt == 1:
            return self._tap(x, 0), None
        if cache is None:
            cache = x.new_zeros((self.context, *x.shape[1:]))
        window = torch.cat([cache, x])  # [Tc + T, B, H, W, Cin]
        frames = (window.shape[0] - kt) // st + 1
        span = st * (frames - 1) + 1  # window frames between the first and last output's tap k
        if kt * self.out_channels <= STACKED_TAPS_MAX_WIDTH:
            taps = self._all_taps(window)  # [Tc + T, B, H, W, kt, Cout]
            out = taps[0:span:st, ..., 0, :] + taps[1 : 1 + span : st, ..., 1, :]
            for k in range(2, kt):
                out.add_(taps[k : k + span : st, ..., k, :])
        else:
            out = self._tap(window[0:span:st], 0)
            for k in range(1, kt):
                out.add_(self._tap(window[k : k + span : st], k))
        return out, window[frames * st :].clone()  # where the next output's window starts

    def _tap(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The 2D conv of time tap k; [T, B, H, W, Cin] -> [T, B, H, W, Cout]."""
        bias = self.bias if k == 0 else None
        return conv2d_frames(x, self.weight[:, :, k], bias, padding=self.space_padding)

    def _all_taps(self, x: torch.Tensor) -> torch.Tensor:
        """Every time tap's 2D conv of every frame; [T, B, H, W, Cin] -> [T, B, H, W, kt, Cout].

        One conv kt times as wide: narrow convs use the CPU far better that way, although the
        context frames are convolved too.
        """
        kt, cout = self.kernel_size[0], self.out_channels
        width = kt * cout
        pad = -width % STACKED_TAPS_WIDTH_MULTIPLE
        weight = self.weight.movedim(2, 0).flatten(0, 1)  # [kt*Cout, Cin, kh, kw]
        weight = torch.cat([weight, weight.new_zeros(pad, *weight.shape[1:])])  # [W', ...]
        bias = None
        if self.bias is not None:
            bias = torch.cat([self.bias, self.bias.new_zeros(width - cout + pad)])  # tap 0 only
        out = conv2d_frames(x, weight, bias, padding=self.space_padding)  # [..., W']
        return out[..., :width].unflatten(-1, (kt, cout))


class RMSNorm(nn.Module):
    """Wan's RMS_norm over channels: x / max(|x|, eps) * sqrt(C) * gamma, computed in fp32."""

    def __init__(self, dim: int, *, images: bool = False):
        super().__init__()
        self.scale = dim**0.5
        # Wan's gamma broadcasts over [C, T, H, W] (or [C, H, W] for images): keep its shape.
        self.gamma = nn.Parameter(torch.ones(dim, *(1,) * (2 if images else 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., C] -> [..., C]."""
        xf = x.float()
        # The sum of squares as a matmul: torch's sum() over a narrow contiguous last dim is
        # slow on CPU, and at the tiny preset's full resolution C is 4.
        sum_sq = xf.square() @ xf.new_ones(xf.shape[-1], 1)  # [..., 1]
        inv_norm = sum_sq.clamp_min_(NORM_EPS**2).rsqrt_()  # 1 / max(|x|, eps), as F.normalize
        return (xf * inv_norm).mul_(self.scale * self.gamma.flatten().float()).type_as(x)


class ResidualBlock(nn.Module):
    """(norm, SiLU, causal 3x3x3 conv) twice, plus a pointwise shortcut when widths differ."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        # Indexed like Wan's nn.Sequential so checkpoint names match (residual.2, residual.6).
        self.residual = nn.Sequential(
            RMSNorm(in_dim),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, VAE_KERNEL),
            RMSNorm(out_dim),
            nn.SiLU(),
            nn.Identity(),  # Wan's Dropout(0.0)
            CausalConv3d(out_dim, out_dim, VAE_KERNEL),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else None

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, Cache]:
        """x: [T, B, H, W, Cin] -> [T, B, H, W, Cout]; cache: (conv1's, conv2's) or None."""
        norm1, _, conv1, norm2, _, _, conv2 = self.residual
        cache1, cache2 = cache if cache is not None else (None, None)
        h, cache1 = conv1(F.silu(norm1(x), inplace=True), cache1)
        h, cache2 = conv2(F.silu(norm2(h), inplace=True), cache2)
        skip = x if self.shortcut is None else self.shortcut(x)[0]
        return h.add_(skip), (cache1, cache2)


class AttentionBlock(nn.Module):
    """Single-head self-attention among the pixels of each frame (nothing crosses time)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, Cache]:
        """x: [T, B, H, W, C] -> [T, B, H, W, C]; stateless, so the cache stays None."""
        t, b, h, w, c = x.shape
        qkv = conv2d_frames(self.norm(x), self.to_qkv.weight, self.to_qkv.bias)  # [T,B,H,W,3C]
        q, k, v = qkv.view(t * b, 1, h * w, 3 * c).chunk(3, dim=-1)  # [T*B, 1, H*W, C] each
        out = F.scaled_dot_product_attention(q, k, v).reshape(t, b, h, w, c)  # [T, B, H, W, C]
        return x + conv2d_frames(out, self.proj.weight, self.proj.bias), None


class CausalSequential(nn.Sequential):
    """Causal parts in order, each with its own entry of the cache tuple."""

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, Cache]:
        return run_causal(list(self), x, cache)


def run_causal(
    parts: Sequence[nn.Module], x: torch.Tensor, cache: Cache
) -> tuple[torch.Tensor, Cache]:
    """Run `parts` in order; `cache` holds one entry per part, or is None at a stream start."""
    caches = cache if cache is not None else (None,) * len(parts)
    new = []
    for part, part_cache in zip(parts, caches, strict=True):
        x, part_cache = part(x, part_cache)
        new.append(part_cache)
    return x, tuple(new)


def middle_block(dim: int) -> CausalSequential:
    """Residual block, attention, residual block (Wan's `middle`)."""
    return CausalSequential(ResidualBlock(dim, dim), AttentionBlock(dim), ResidualBlock(dim, dim))


class Head(nn.Sequential):
    """Norm, SiLU and a causal 3x3x3 conv to the output width (Wan's `head`)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__(RMSNorm(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, VAE_KERNEL))

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, Cache]:
        """x: [T, B, H, W, Cin] -> [T, B, H, W, Cout]."""
        norm, _, conv = self
        return conv(F.silu(norm(x), inplace=True), cache)
