"""An independent face analyser: dlib's frontal face detector, 68-point landmarks and 128-d face
descriptor, whose weights ship in PyPI wheels (dlib-bin, face-recognition-models) and load
offline. The project never trains against it, so its figures cannot be learnt around.

dlib's 68-point model was trained on data licensed for non-commercial use: it lives in the
optional `eval` extra and never in the product's path.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

ANALYSIS_SIZE = 384  # every picture is resized so its short side is this before detection
DESCRIPTOR_EVERY = 10  # a face descriptor every this many frames (identity moves slowly)
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper and lower inner-lip points
LEFT_EYE, RIGHT_EYE, LIPS = slice(36, 42), slice(42, 48), slice(48, 68)
SAME_PERSON = 0.6  # dlib's convention: descriptors closer than this are one person

INSTALL_HINT = "install the eval extra: bin/bootstrap eval (or pip install -e '.[eval]')"


@dataclass(frozen=True)
class FaceTrack:
    """One face followed through frames (or a single picture, T = 1)."""

    found: np.ndarray  # [T] bool: the detector found this face in the frame
    landmarks: np.ndarray  # [T, 68, 2] (x, y) in the frame's pixels; where not found, fitted
    # in the face's last known box, so the series stays whole
    descriptors: np.ndarray  # [T, 128]; NaN rows where none was computed or no face was found
    boxes: np.ndarray  # [T, 4] (left, top, right, bottom) in analysis pixels: the box fitted

    def __len__(self) -> int:
        return len(self.found)


@cache
def _models():
    try:
        import dlib
    except ImportError:
        raise RuntimeError(f"the face analyser needs dlib: {INSTALL_HINT}") from None
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the face analyser needs face-recognition-models: {INSTALL_HINT}")
    models = Path(spec.submodule_search_locations[0]) / "models"
    return (
        dlib,
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat")),
    )


def _resized(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The picture with its short side at ANALYSIS_SIZE (bicubic), and the scale applied."""
    scale = ANALYSIS_SIZE / min(image.shape[:2])
    if scale == 1:
        return np.ascontiguousarray(image), 1.0
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)), scale


def _pick(dlib, detections, expect) -> object | None:
    """The detection whose centre lies in the expected box (analysis pixels), nearest to its
    centre; None if none does."""
    ex, ey = expect.center().x, expect.center().y
    inside = [d for d in detections if expect.contains(d.center())]
    if not inside:
        return None
    return min(inside, key=lambda d: (d.center().x - ex) ** 2 + (d.center().y - ey) ** 2)


def track_face(
    frames: np.ndarray,
    face_box: tuple[float, float, float, float],
    *,
    every: int = 1,
    like: FaceTrack | None = None,
) -> FaceTrack:
    """Follow the face expected in `face_box` through `frames`.

    Args:
        frames: [T, H, W, 3] uint8 RGB.
        face_box: (x0, y0, x1, y1) fractions of the frame where the face is expected; a
            detection counts as this face when its centre lies inside.
        every: compute a descriptor every this many frames (1: every frame).
        like: a track of the same face in frames of the same geometry (the raw frames of a
            shown video): its detections are reused instead of detecting again.
    """
    dlib = _models()[0]
    t, h, w = frames.shape[:3]
    found = np.zeros(t, dtype=bool)
    landmarks = np.zeros((t, 68, 2))
    descriptors = np.full((t, 128), np.nan)
    boxes = np.zeros((t, 4))
    scale = ANALYSIS_SIZE / min(h, w)
    x0, y0, x1, y1 = (v * s * scale for v, s in zip(face_box, (w, h, w, h), strict=True))
    expect = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
    last = expect
    # Frames repeat (a still picture, a listener at rest): each distinct one is analysed once.
    seen: dict[tuple, tuple] = {}
    for i in range(t):
        hint = None if like is None else (bool(like.found[i]), tuple(like.boxes[i]))
        key = (hashlib.blake2b(frames[i].tobytes(), digest_size=16).digest(), hint,
               (last.left(), last.top(), last.right(), last.bottom()))  # fmt: skip
        wanted = i % every == 0
        if key not in seen or (wanted and seen[key][0] and seen[key][3] is None):
            seen[key] = _analyse(frames[i], expect, last, hint, scale, describe=wanted)
        hit, box, points, descriptor = seen[key]
        found[i], boxes[i], landmarks[i] = hit, box, points
        last = dlib.rectangle(*(int(v) for v in box))
        if hit and wanted:
            descriptors[i] = descriptor
    return FaceTrack(found, landmarks, descriptors, boxes)


def _analyse(frame: np.ndarray, expect, last, hint, scale: float, *, describe: bool) -> tuple:
    """(found, box [4], landmarks [68, 2] in frame pixels, descriptor [128] or None) of one
    frame: the face detected in `expect` (or, with a hint, where another track found it), else
    fitted in the last box."""
    dlib, detector, predictor, recogniser = _models()
    image, _ = _resized(frame)
    if hint is None:
        hit = _pick(dlib, detector(image, 0), expect)
    else:
        hit = dlib.rectangle(*(int(v) for v in hint[1])) if hint[0] else None
    box = hit if hit is not None else last
    shape = predictor(image, box)
    points = np.array([(p.x, p.y) for p in shape.parts()]) / scale
    descriptor = None
    if describe and hit is not None:
        descriptor = np.array(recogniser.compute_face_descriptor(image, shape))
    return hit is not None, (box.left(), box.top(), box.right(), box.bottom()), points, descriptor


def describe(image: np.ndarray, face_box: tuple[float, float, float, float]) -> FaceTrack:
    """One picture's face (T = 1), with its descriptor. Args: image [H, W, 3] uint8 RGB."""
    return track_face(image[None], face_box)


def round_trip(image: np.ndarray, size: int) -> np.ndarray:
    """The picture shrunk to `size` on its short side and back (antialiased bicubic both ways):
    what an output of that size keeps of it. Args/returns: [H, W, 3] uint8 RGB."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    small = Image.fromarray(image).resize(
        (round(w * scale), round(h * scale)), Image.BICUBIC, reducing_gap=None
    )
    return np.asarray(small.resize((w, h), Image.BICUBIC))
