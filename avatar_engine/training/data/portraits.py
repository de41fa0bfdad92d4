"""Portraits to animate: procedurally drawn characters and real photos shipped inside Python
packages, each with where its face, mouth and eyes are (fractions of the frame)."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avatar_engine.canvas import FACE_WIDTH_SHARE
from avatar_engine.framing import Box, Portrait, crop_window, detect_faces, photo_portrait


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    return ys[:, None].expand(size, size), ys[None, :].expand(size, size)  # y [H, W], x [H, W]


def _ellipse(y, x, cy, cx, ry, rx, soft: float = 0.006) -> torch.Tensor:
    """Anti-aliased coverage of an ellipse, [H, W] in [0, 1]."""
    d = torch.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)  # 1 on the rim
    return ((1 - d) * min(ry, rx) / soft).clamp(0, 1)


def _paint(canvas: torch.Tensor, coverage: torch.Tensor, color) -> None:
    canvas.mul_(1 - coverage[..., None]).add_(coverage[..., None] * torch.tensor(color))


# Photos (none of a face) whose crops become backgrounds, so the VAE meets natural texture:
# fur, foliage, fabric, metal, grain. scikit-image ships them; grey ones are tinted.
TEXTURE_PHOTOS = ("chelsea", "coffee", "rocket", "hubble_deep_field",
                  "immunohistochemistry", "retina", "colorwheel", "camera", "brick", "grass",
                  "gravel", "moon", "coins", "page")  # fmt: skip


@cache
def _texture_photo(name: str) -> torch.Tensor:
    from skimage import data

    image = torch.tensor(getattr(data, name)(), dtype=torch.float32) / 255
    return image[..., None].expand(*image.shape, 3) if image.ndim == 2 else image[..., :3]


def _photo_background(rng: np.random.Generator, size: int) -> torch.Tensor:
    photo = _texture_photo(TEXTURE_PHOTOS[rng.integers(len(TEXTURE_PHOTOS))])
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.2, 1.0))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[top : top + side, left : left + side].permute(2, 0, 1)[None]
    crop = torch.nn.functional.interpolate(
        crop, size=(size, size), mode="bicubic", antialias=True, align_corners=False
    )[0].permute(1, 2, 0)
    if rng.random() < 0.5:
        crop = crop.flip(1)
    tint = torch.tensor(rng.uniform(0.6, 1.2, 3), dtype=torch.float32)
    return (crop * tint).clamp(0, 1)


def background(rng: np.random.Generator, size: int) -> torch.Tensor:
    """Half the time a two-colour gradient, half a crop of a photo."""
    if rng.random() < 0.5:
        return _photo_background(rng, size)
    y, x = _grid(size)
    a, b = rng.uniform(0.1, 0.95, 3), rng.uniform(0.1, 0.95, 3)
    angle = rng.uniform(0, np.pi)
    t = (np.cos(angle) * x + np.sin(angle) * y).clamp(0, 1)[..., None]
    return torch.tensor(a, dtype=torch.float32) * (1 - t) + torch.tensor(b, dtype=torch.float32) * t


SKIN = ((0.98, 0.84, 0.72), (0.9, 0.72, 0.55), (0.72, 0.52, 0.36), (0.48, 0.32, 0.2),
        (0.62, 0.85, 0.55), (0.7, 0.75, 0.95))  # fmt: skip


def draw_portrait(rng: np.random.Generator, size: int, *, box: Box | None = None) -> Portrait:
    """A cartoon head with a closed mouth (motion opens it), inside `box` or a random one."""
    canvas = background(rng, size)
    y, x = _grid(size)
    if box is None:
        w = rng.uniform(0.42, 0.62)
        cx, cy = rng.uniform(0.5 - (0.5 - w / 2) * 0.4, 0.5 + (0.5 - w / 2) * 0.4), 0.5
        box = (cx - w / 2, cy - w * 0.62, cx + w / 2, cy + w * 0.62)
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    skin = np.clip(np.array(SKIN[rng.integers(len(SKIN))]) + rng.normal(0, 0.04, 3), 0, 1)
    hair = rng.uniform(0.0, 0.8, 3) * rng.uniform(0.2, 1.0)
    _paint(canvas, _ellipse(y, x, cy + 0.55 * ry, cx, 0.6 * ry, 0.55 * rx), rng.uniform(0, 1, 3))
    _paint(canvas, _ellipse(y, x, cy - 0.12 * ry, cx, 1.02 * ry, 1.04 * rx), hair)  # hair
    for side in (-1, 1):  # ears
        _paint(canvas, _ellipse(y, x, cy, cx + side * 0.95 * rx, 0.2 * ry, 0.13 * rx), skin)
    _paint(canvas, _ellipse(y, x, cy + 0.05 * ry, cx, 0.92 * ry, 0.9 * rx), skin)  # face
    if rng.random() < 0.5:  # fringe
        _paint(canvas, _ellipse(y, x, cy - 0.85 * ry, cx, 0.3 * ry, 0.85 * rx), hair)
    eye_y, eye_dx, eye_r = cy - 0.12 * ry, rng.uniform(0.3, 0.42) * rx, rng.uniform(0.1, 0.16)
    eyes = []
    iris = rng.uniform(0, 0.7, 3)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        _paint(canvas, _ellipse(y, x, eye_y, ex, eye_r * 0.7 * ry, eye_r * rx), (0.97,) * 3)
        _paint(canvas, _ellipse(y, x, eye_y, ex, eye_r * 0.45 * ry, eye_r * 0.45 * rx), iris)
        _paint(canvas, _ellipse(y, x, eye_y - eye_r * 0.9 * ry, ex, 0.03 * ry, eye_r * rx), hair)
        eyes.append((ex, eye_y, eye_r * rx))
    if rng.random() < 0.3:  # glasses
        for side in (-1, 1):
            ring = _ellipse(y, x, eye_y, cx + side * eye_dx, 0.2 * ry, 0.19 * rx)
            inner = _ellipse(y, x, eye_y, cx + side * eye_dx, 0.17 * ry, 0.16 * rx)
            _paint(canvas, (ring - inner).clamp(0, 1), (0.1, 0.1, 0.1))
    shade = tuple(np.clip(skin * 0.8, 0, 1))
    _paint(canvas, _ellipse(y, x, cy + 0.2 * ry, cx, 0.16 * ry, 0.07 * rx), shade)  # nose
    mouth_y, mouth_w = cy + rng.uniform(0.45, 0.55) * ry, rng.uniform(0.25, 0.4) * rx
    lips = np.clip(skin * np.array([0.85, 0.5, 0.5]), 0, 1)
    _paint(canvas, _ellipse(y, x, mouth_y, cx, 0.035 * ry + 0.01, mouth_w), lips)
    return Portrait(canvas.clamp(0, 1), box, (cx, mouth_y, mouth_w), tuple(eyes), "drawn")


@cache
def _lfw_faces() -> np.ndarray:
    from skimage import data

    return data.lfw_subset()[:100]  # [100, 25, 25] grey faces; the rest are non-faces


def lfw_portrait(rng: np.random.Generator, size: int, index: int) -> Portrait:
    """A real face from scikit-image's LFW subset, tinted, on a drawn background."""
    face = torch.tensor(_lfw_faces()[index], dtype=torch.float32)
    side = int(size * rng.uniform(0.55, 0.8))
    face = torch.nn.functional.interpolate(
        face[None, None], size=(side, side), mode="bicubic", align_corners=False
    )[0, 0].clamp(0, 1)
    tint = torch.tensor(np.clip(np.array(SKIN[rng.integers(4)]) * 1.15, 0, 1), dtype=torch.float32)
    canvas = background(rng, size)
    top = int(rng.integers(size // 10, size - side + 1))
    left = int(rng.integers(0, size - side + 1))
    y, x = _grid(side)
    alpha = _ellipse(y, x, 0.5, 0.5, 0.56, 0.5, soft=0.08)[..., None]  # round off the crop
    patch = face[..., None] * tint
    region = canvas[top : top + side, left : left + side]
    canvas[top : top + side, left : left + side] = region * (1 - alpha) + patch * alpha
    f = side / size
    fx, fy = left / size, top / size
    return Portrait(
        canvas,
        (fx + 0.05 * f, fy, fx + 0.95 * f, fy + f),
        (fx + 0.5 * f, fy + 0.8 * f, 0.17 * f),
        ((fx + 0.33 * f, fy + 0.4 * f, 0.09 * f), (fx + 0.67 * f, fy + 0.4 * f, 0.09 * f)),
        "lfw",
    )


PHOTO_DIR = Path(__file__).resolve().parents[3] / "assets" / "training" / "photos"
PHOTO_MARKS = Path(__file__).with_name("photos.json")  # tools/annotate_photos.py wrote it
# Real colour photos to learn from: scikit-image's astronaut and White House portraits (US
# government works, in the public domain; assets/training/README.md).
TRAIN_PHOTOS = ("astronaut", "obama", "obama2", "obama3", "biden")
HELD_OUT_PHOTO = "grace_hopper"  # never used in training: the evaluation's unseen real photo
LFW_TRAIN = range(0, 90)  # LFW faces 90..99 are held out for evaluation
# A photo is framed as the product frames a face (canvas.face_window: its detected box
# centred, FACE_WIDTH_SHARE of the window wide), give or take this much: a face learnt at
# that framing is learnt quickly, one zoomed 0.4-0.6 and shifted 0.15 face widths was not.
PHOTO_ZOOM_JITTER = 0.05
PHOTO_SHIFT = 0.05  # face widths, each way


@cache
def _photo_marks() -> dict[str, dict]:
    return json.loads(PHOTO_MARKS.read_text())


@cache
def named_photo(name: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A real photo (shipped with a Python package, or in assets/training/photos), and its
    largest face."""
    if name == "astronaut":
        from skimage import data

        image = data.astronaut()
    elif name == HELD_OUT_PHOTO:
        try:
            from matplotlib import cbook
        except ImportError:
            raise RuntimeError(
                "the evaluation's held-out photo ships with matplotlib: install the train "
                "extra (pip install -e '.[train]')"
            ) from None
        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            image = np.asarray(im.convert("RGB"))
    elif name in TRAIN_PHOTOS:
        with Image.open(PHOTO_DIR / f"{name}.jpg") as im:
            image = np.asarray(im.convert("RGB"))
    else:
        known = ", ".join((*TRAIN_PHOTOS, HELD_OUT_PHOTO))
        raise ValueError(f"unknown photo {name!r}; known: {known}")
    faces = detect_faces(image)
    if not faces:
        raise RuntimeError(f"no face found in {name}")
    return image, faces[0]


def landmarked_portrait(
    name: str, size: int, *, zoom: float, shift=(0.0, 0.0), mirror: bool = False
) -> Portrait:
    """A photo cropped as the product crops it (around its detected face), with the mouth and
    eyes where its face mesh found them, not where a rule puts them."""
    image, face = named_photo(name)
    marks = _photo_marks()[name]
    top, left, crop = crop_window(face, zoom=zoom, shift=shift)
    portrait = photo_portrait(image, face, size, zoom=zoom, shift=shift)

    def at(point) -> tuple[float, float]:
        return (point[0] - left) / crop, (point[1] - top) / crop

    (lx, ly), (rx, ry) = (at(p) for p in marks["corners"])
    upper, lower = (at(p) for p in marks["inner_lips"])
    mouth = ((lx + rx) / 2, (upper[1] + lower[1]) / 2, abs(rx - lx) / 2)
    eyes = []
    for a, b in marks["eyes"]:
        (ax, ay), (bx, by) = at(a), at(b)
        eyes.append(((ax + bx) / 2, (ay + by) / 2, abs(bx - ax) / 2))
    portrait = replace(portrait, mouth=mouth, eyes=tuple(eyes), source=name)
    return mirrored(portrait) if mirror else portrait


def mirrored(portrait: Portrait) -> Portrait:
    """The portrait flipped left to right, its landmarks with it."""
    x0, y0, x1, y1 = portrait.face_box
    mx, my, mw = portrait.mouth
    return replace(
        portrait,
        image=portrait.image.flip(1),
        face_box=(1 - x1, y0, 1 - x0, y1),
        mouth=(1 - mx, my, mw),
        eyes=tuple((1 - ex, ey, ew) for ex, ey, ew in reversed(portrait.eyes)),
    )


def relit(portrait: Portrait, rng: np.random.Generator) -> Portrait:
    """Another exposure, contrast and white balance of the same photo."""
    image = portrait.image
    mean = image.mean()
    contrast, exposure = rng.uniform(0.8, 1.2), rng.uniform(0.75, 1.25)
    balance = torch.tensor(rng.uniform(0.9, 1.1, 3), dtype=torch.float32)
    image = ((image - mean) * contrast + mean) * exposure * balance
    return replace(portrait, image=image.clamp(0, 1))


def random_portrait(rng: np.random.Generator, size: int, *, held_out: bool = False) -> Portrait:
    """A training (or, with held_out, an evaluation) portrait of any source."""
    kind = rng.random()
    if kind < 0.4:
        return draw_portrait(rng, size)
    if kind < 0.65:
        pool = range(90, 100) if held_out else LFW_TRAIN
        return lfw_portrait(rng, size, int(rng.choice(pool)))
    name = HELD_OUT_PHOTO if held_out else TRAIN_PHOTOS[rng.integers(len(TRAIN_PHOTOS))]
    shift = tuple(rng.uniform(-PHOTO_SHIFT, PHOTO_SHIFT, 2))
    zoom = rng.uniform(FACE_WIDTH_SHARE - PHOTO_ZOOM_JITTER, FACE_WIDTH_SHARE + PHOTO_ZOOM_JITTER)
    mirror = bool(rng.random() < 0.5)
    return relit(landmarked_portrait(name, size, zoom=zoom, shift=shift, mirror=mirror), rng)
