"""3D rotary position embedding (Wan layout: complex pairs split over time, height, width)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatar_engine.config import DiTConfig


@dataclass(frozen=True)
class RopeTable:
    """Rotations for a run of token positions."""

    rotation: torch.Tensor  # [L, 1, D/2] complex64 unit phasors, one per complex pair of a head


def _inverse_frequencies(cfg: DiTConfig, device: torch.device) -> list[torch.Tensor]:
    freqs = []
    for pairs in cfg.rope_split:
        exponent = torch.arange(pairs, dtype=torch.float64, device=device) * 2 / (2 * pairs)
        freqs.append(cfg.rope_theta**-exponent)  # [pairs]
    return freqs


def rope_table(cfg: DiTConfig, frames: torch.Tensor, grid_h: int, grid_w: int) -> RopeTable:
    """Angles for tokens laid out frame-major, then row, then column.

    Args:
        frames: [F] frame positions (any integers; slots for streaming, 0..F-1 for clips).

    Returns:
        Rotations for F*grid_h*grid_w tokens.
    """
    device = frames.device
    inv_t, inv_h, inv_w = _inverse_frequencies(cfg, device)
    n_f = frames.numel()
    ang_t = torch.outer(frames.to(torch.float64), inv_t)  # [F, Pt]
    ang_h = torch.outer(torch.arange(grid_h, dtype=torch.float64, device=device), inv_h)
    ang_w = torch.outer(torch.arange(grid_w, dtype=torch.float64, device=device), inv_w)
    angles = torch.cat(
        [
            ang_t[:, None, None].expand(n_f, grid_h, grid_w, -1),
            ang_h[None, :, None].expand(n_f, grid_h, grid_w, -1),
            ang_w[None, None, :].expand(n_f, grid_h, grid_w, -1),
        ],
        dim=-1,
    ).flatten(0, 2)  # [F*h*w, D/2]
    return RopeTable(
        rotation=torch.polar(torch.ones_like(angles), angles)[:, None].to(torch.complex64)
    )


def apply_rope(x: torch.Tensor, table: RopeTable) -> torch.Tensor:
    """Rotate adjacent channel pairs (x[2i], x[2i+1]) by the table's angles.

    Args:
        x: [B, L, H, D] queries or keys; L must equal the table's length.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # [B, L, H, D/2] complex
    return torch.view_as_real(pairs * table.rotation).flatten(-2).type_as(x)
