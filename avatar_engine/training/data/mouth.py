"""The inside of an open mouth, drawn where the lips part: a dark cavity lit from the front,
the upper teeth under the upper lip, the tongue low in the mouth. A flat dark ellipse taught
the model to paint a blotch; a mouth looks like a mouth because of these parts and their
edges.

The lips themselves are the picture's own, moved by the warp in motion.py: the upper lip lifts
by UPPER_SHARE of the gap, the lower lip and the jaw drop by the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

UPPER_SHARE = 0.2  # of the gap between the lips, how much is the upper lip lifting
CAVITY = torch.tensor((0.10, 0.03, 0.035))  # the shadowed back of the mouth
TEETH = torch.tensor((0.93, 0.91, 0.85))
TONGUE = torch.tensor((0.62, 0.28, 0.28))
ROUNDED_WIDTH = 0.6  # a fully rounded mouth ("oo") opens this share of its wide width


@dataclass(frozen=True)
class MouthLook:
    """What one character's open mouth shows, drawn once per clip."""

    teeth: float  # 0..1: how far the upper teeth show below the upper lip (some people hardly)
    tongue: float  # 0..1: how much of the tongue shows in a wide opening

    @classmethod
    def random(cls, rng: np.random.Generator) -> MouthLook:
        return cls(teeth=float(rng.uniform(0.3, 1.0)), tongue=float(rng.uniform(0.0, 1.0)))


def lip_gap(opening: float, full_gap: float) -> tuple[float, float]:
    """(upper lift, lower drop) of the lips, frame fractions, at an opening in [0, 1]."""
    gap = opening * full_gap
    return UPPER_SHARE * gap, (1 - UPPER_SHARE) * gap


def draw_inside(
    frame: torch.Tensor,
    y: torch.Tensor,
    x: torch.Tensor,
    mouth: tuple[float, float, float],
    gap: tuple[float, float],
    rounding: float,
    look: MouthLook,
    pixel: float,
) -> None:
    """Draw an open mouth's inside into a frame, in place.

    Args:
        frame: [H, W, 3] float in [0, 1], already warped (lips parted).
        y, x: [H, W] pixel centres, frame fractions.
        mouth: centre x, lip-line y, half width (frame fractions) of the closed mouth.
        gap: (upper lift, lower drop) from lip_gap.
        rounding: 0 wide .. 1 rounded.
        pixel: one pixel's size in frame fractions (the edges are a pixel soft).
    """
    mx, my, mw = mouth
    lift, drop = gap
    half_h = (lift + drop) / 2
    if half_h < pixel:
        return
    cy = my - lift + half_h
    half_w = mw * 0.92 * (1 - (1 - ROUNDED_WIDTH) * rounding)
    rows = slice(*_span(cy, half_h + pixel, y[:, 0]))
    cols = slice(*_span(mx, half_w + pixel, x[0]))
    yy, xx = y[rows, cols], x[rows, cols]
    # A lens: the lips' inner edges are arcs that meet at the corners.
    u = (xx - mx) / half_w  # -1..1 across
    edge = half_h * (1 - u.square()).clamp(min=0).sqrt()  # the arcs' half height at u
    inside = ((edge - (yy - cy).abs()) / pixel).clamp(0, 1)  # [h, w]
    depth = (1 - ((yy - cy).abs() / half_h).clamp(0, 1)) * (1 - u.abs())
    base = frame[rows, cols]
    lip_shadow = base * 0.35  # near the lips the inside catches some light
    colour = lip_shadow + (CAVITY - lip_shadow) * depth[..., None].clamp(0, 1).sqrt()
    top = cy - edge  # the upper lip's inner edge at u
    teeth_h = look.teeth * min(0.4 * mw, 0.7 * 2 * half_h)
    teeth = ((top + teeth_h - yy) / pixel).clamp(0, 1) * ((0.8 - u.abs()) / 0.1).clamp(0, 1)
    shade = 1 - 0.35 * u.abs()  # teeth darken towards the corners
    colour = colour + (TEETH * shade[..., None] - colour) * teeth[..., None]
    if look.tongue > 0:
        bottom = cy + edge
        tongue_h = look.tongue * 0.45 * 2 * half_h
        tongue = ((yy - (bottom - tongue_h)) / pixel).clamp(0, 1) * ((0.6 - u.abs()) / 0.2).clamp(
            0, 1
        )
        colour = colour + (TONGUE - colour) * (tongue * (1 - teeth))[..., None]
    frame[rows, cols] = base + (colour - base) * inside[..., None]


def _span(centre: float, half: float, coords: torch.Tensor) -> tuple[int, int]:
    """Index range of the pixels whose centres lie within centre ± half."""
    lo = int(torch.searchsorted(coords, torch.tensor(centre - half)))
    hi = int(torch.searchsorted(coords, torch.tensor(centre + half)))
    return lo, max(hi, lo)
