"""Framing a photo for the engine: its faces (scikit-image's LBP cascade) and a square portrait
cropped around one, with where its face, mouth and eyes are (fractions of the frame). Used by
the product (library, console, render) and by training's portraits alike."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) fractions of the frame


@dataclass(frozen=True)
class Portrait:
    """One character's picture at the stream's size, and its landmarks."""

    image: torch.Tensor  # [H, W, 3] float in [0, 1]
    face_box: Box
    mouth: tuple[float, float, float]  # centre x, centre y, half width (fractions)
    eyes: tuple[tuple[float, float, float], ...]  # per eye: centre x, centre y, half width
    source: str  # "drawn", "lfw", "astronaut", ...


def as_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """A picture or video in [0, 1] as uint8 levels (rounded), any shape."""
    return (pixels * 255).round().to(torch.uint8)


def crop_window(
    face: tuple[int, int, int], *, zoom: float, shift=(0.0, 0.0)
) -> tuple[int, int, float]:
    """The square `photo_portrait` crops around a face: its top and left pixel and its side."""
    row, col, side = face
    crop = side / zoom
    cy = row + side * (0.55 + shift[1])
    cx = col + side * (0.5 + shift[0])
    return int(round(cy - crop / 2)), int(round(cx - crop / 2)), crop


def photo_portrait(
    image: np.ndarray, face: tuple[int, int, int], size: int, *, zoom: float, shift=(0.0, 0.0)
) -> Portrait:
    """Crop a photo around a detected face (row, col, side in pixels) and resize it.

    zoom is the face's width as a fraction of the crop; shift moves the crop (face widths).
    """
    row, col, side = face
    top, left, crop = crop_window(face, zoom=zoom, shift=shift)
    pad = int(crop)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    patch = padded[top + pad : top + pad + int(crop), left + pad : left + pad + int(crop)]
    pixels = torch.tensor(patch, dtype=torch.float32).permute(2, 0, 1)[None] / 255
    pixels = torch.nn.functional.interpolate(
        pixels, size=(size, size), mode="bicubic", antialias=True, align_corners=False
    )[0].permute(1, 2, 0)

    def fx(c: float) -> float:
        return (c - left) / crop

    def fy(r: float) -> float:
        return (r - top) / crop

    return Portrait(
        pixels.clamp(0, 1),
        (fx(col), fy(row), fx(col + side), fy(row + side * 1.1)),
        (fx(col + side * 0.5), fy(row + side * 0.8), 0.18 * side / crop),
        tuple(
            (fx(col + side * ex), fy(row + side * 0.42), 0.09 * side / crop) for ex in (0.3, 0.7)
        ),
        "photo",
    )


@cache
def _face_detector():
    from skimage import data, feature

    return feature.Cascade(data.lbp_frontal_face_cascade_filename())


def detect_faces(image: np.ndarray, *, min_fraction: float = 0.08) -> list[tuple[int, int, int]]:
    """Frontal faces in an RGB uint8 image as (row, col, side), largest first (scikit-image's
    LBP cascade), one detection per face: the cascade reports a face at several nearby scales,
    so a detection centred inside a larger one is dropped."""
    from skimage.color import rgb2gray

    small = min(image.shape[:2])
    found = _face_detector().detect_multi_scale(
        img=rgb2gray(image),
        scale_factor=1.2,
        step_ratio=1,
        min_size=(int(small * min_fraction),) * 2,
        max_size=(small, small),
    )
    kept: list[tuple[int, int, int]] = []
    for row, col, side in sorted(
        ((d["r"], d["c"], d["width"]) for d in found), key=lambda b: -b[2]
    ):
        cy, cx = row + side / 2, col + side / 2
        if not any(r <= cy < r + s and c <= cx < c + s for r, c, s in kept):
            kept.append((row, col, side))
    return kept
