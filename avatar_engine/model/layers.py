"""Norms, embeddings, modulation and the output head shared by the DiT's modules."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the activation dtype (as Wan does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type_as(x)


class RMSNorm(nn.Module):
    """RMSNorm over the last dim, computed in fp32, with a learned scale."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return (normed * self.weight.float()).type_as(x)


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[cos | sin] embedding of timesteps with periods up to 10000.

    Args:
        t: [...] timesteps (Wan units: 0 = clean, 1000 = pure noise).

    Returns:
        [..., dim] fp32
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float64, device=t.device) / half
    )
    angles = t.to(torch.float64)[..., None] * freqs  # [..., half]
    return torch.cat([angles.cos(), angles.sin()], dim=-1).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift with one (shift, scale) per latent frame, in fp32.

    Args:
        x: [B, F*G, D] normalised tokens, G tokens per latent frame.
        shift, scale: [B, F, 1, D] fp32.

    Returns:
        [B, F*G, D] fp32
    """
    frames = shift.shape[1]
    x = x.float().unflatten(1, (frames, -1))  # [B, F, G, D]
    return (x * (1 + scale) + shift).flatten(1, 2)


def gated_residual(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """x + y * gate per latent frame, accumulated in fp32.

    Args:
        x, y: [B, F*G, D]; gate: [B, F, 1, D] fp32.
    """
    frames = gate.shape[1]
    out = x.float().unflatten(1, (frames, -1)) + y.float().unflatten(1, (frames, -1)) * gate
    return out.flatten(1, 2).type_as(x)


def feed_forward(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
    )


class ImageEmbedding(nn.Module):
    """CLIP image tokens -> model width (LayerNorm, Linear, GELU, Linear, LayerNorm)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(
            FP32LayerNorm(in_dim),
            nn.Linear(in_dim, in_dim),
            nn.GELU(),
            nn.Linear(in_dim, dim),
            FP32LayerNorm(dim),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Args: tokens: [B, Li, image_dim]. Returns [B, Li, D]."""
        return self.proj(tokens)


class Head(nn.Module):
    """Modulated output projection back to patch pixels."""

    def __init__(self, dim: int, out_dim: int, patch_size: tuple[int, int, int], eps: float):
        super().__init__()
        self.norm = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_dim * math.prod(patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Args:
            x: [B, F*G, D] tokens.
            temb: [B, F, D] fp32 time embedding per latent frame.

        Returns:
            [B, F*G, out_dim * prod(patch)]
        """
        mod = self.modulation.float()[:, None] + temb[:, :, None]  # [B, F, 2, D]
        shift, scale = mod[:, :, None, 0], mod[:, :, None, 1]  # [B, F, 1, D]
        return self.head(modulate(self.norm(x.float()), shift, scale).type_as(x))
