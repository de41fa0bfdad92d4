"""What a viewer sees, as numbers from a face track: the mouth's opening against the speech,
its sharpness, the face's identity. Pure numpy; the tracks come from judge.faces."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from avatar_engine.training.judge.faces import INNER_LIP_PAIRS, LEFT_EYE, LIPS, RIGHT_EYE

MAX_LAG = 5  # video frames each way the best correlation is searched in (±200 ms at 25 fps)
SHIFT_S = 1.0  # the shifted-audio control moves the envelope by at least this much
LIP_MARGIN = 0.2  # the lip box is widened by this share of the eye distance on each side


def eye_distance(landmarks: np.ndarray) -> np.ndarray:
    """[...] distance between the eyes' centres. Args: landmarks [..., 68, 2]."""
    left, right = landmarks[..., LEFT_EYE, :].mean(-2), landmarks[..., RIGHT_EYE, :].mean(-2)
    return np.linalg.norm(right - left, axis=-1)


def lip_opening(landmarks: np.ndarray) -> np.ndarray:
    """[T] the inner lips' gap (mean over three upper/lower point pairs) over the eye distance:
    0 for closed lips, about 0.3-0.5 for a wide-open mouth. Args: landmarks [T, 68, 2]."""
    gaps = [np.linalg.norm(landmarks[:, a] - landmarks[:, b], axis=-1) for a, b in INNER_LIP_PAIRS]
    return np.mean(gaps, axis=0) / np.maximum(eye_distance(landmarks), 1e-6)


def envelope(audio: np.ndarray, frames: int, samples_per_frame: int) -> np.ndarray:
    """[T] RMS of the audio under each video frame (zero past the audio's end)."""
    wave = np.zeros(frames * samples_per_frame)
    part = audio[: len(wave)]
    wave[: len(part)] = part
    return np.sqrt((wave.reshape(frames, samples_per_frame) ** 2).mean(1))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation; 0 when either side does not vary (a frozen mouth follows nothing)."""
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 1e-12 else 0.0


def lagged_sync(
    opening: np.ndarray, env: np.ndarray, frames: np.ndarray, max_lag: int = MAX_LAG
) -> tuple[float, int]:
    """The best correlation of opening[t + lag] with env[t] over lags in ±max_lag, taken over
    the frames t in `frames` (the speaking ones), and its lag (positive: the mouth is late;
    on a tie, the smallest lag).

    Args:
        opening, env: [T] per video frame.
        frames: [T] bool, the frames the correlation is taken over.
    """
    t = np.flatnonzero(frames)
    best, best_lag = -np.inf, 0
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        keep = t[(t + lag >= 0) & (t + lag < len(opening))]
        if len(keep) < 3:
            continue
        r = _pearson(opening[keep + lag], env[keep])
        if r > best:
            best, best_lag = r, lag
    return (float(best), best_lag) if np.isfinite(best) else (0.0, 0)


def shifted(env: np.ndarray, fps: int, seconds: float = SHIFT_S) -> np.ndarray:
    """The envelope rolled by half its length, or `seconds` if that is more: the shifted-audio
    control, the same speech out of step with the video."""
    return np.roll(env, max(int(np.ceil(seconds * fps)), len(env) // 2))


def fitted(env: np.ndarray, frames: int) -> np.ndarray:
    """Another clip's envelope cut or tiled to `frames`: the other-audio control."""
    return np.resize(env, frames)


def lip_box(landmarks: np.ndarray, shape: tuple[int, int]) -> tuple[slice, slice]:
    """(rows, cols) of the lips' landmarks' box, widened by LIP_MARGIN eye distances, inside
    an image of `shape` (H, W). Args: landmarks [68, 2]."""
    lips = landmarks[LIPS]
    (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
    m = LIP_MARGIN * float(eye_distance(landmarks)) + 1
    rows = slice(max(0, int(y0 - m)), min(shape[0], int(np.ceil(y1 + m))))
    cols = slice(max(0, int(x0 - m)), min(shape[1], int(np.ceil(x1 + m))))
    return rows, cols


def lip_detail(image: np.ndarray, landmarks: np.ndarray, eyes: float) -> float:
    """Variance of the Laplacian of the grey picture inside the lip box, the picture first
    resized so its eye distance is `eyes` pixels (faces compared at one size).

    Args:
        image: [H, W, 3] uint8 RGB.
        landmarks: [68, 2] in the image's pixels.
    """
    scale = eyes / max(float(eye_distance(landmarks)), 1e-6)
    if abs(scale - 1) > 0.02:
        h, w = image.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
        landmarks = landmarks * scale
    grey = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    rows, cols = lip_box(landmarks, grey.shape)
    patch = grey[rows, cols]
    return float(ndimage.laplace(patch)[1:-1, 1:-1].var()) if min(patch.shape) > 2 else 0.0


def descriptor_distance(descriptors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[N] distances of the computed descriptors (NaN rows skipped) from the reference's.
    Args: descriptors [T, 128]; reference [128]."""
    rows = descriptors[~np.isnan(descriptors).any(1)]
    return np.linalg.norm(rows - reference, axis=1)


def mean(values: np.ndarray) -> float:
    """The mean (NaN for no values: a figure with nothing to measure is missing, not 0)."""
    return float(np.mean(values)) if len(values) else float("nan")


def spread(values: np.ndarray) -> float:
    """Standard deviation (NaN for fewer than two values; exactly 0 for values equal but for
    rounding, so a frozen mouth's ratios come out 0 or NaN, never a rounding error's size)."""
    if len(values) < 2:
        return float("nan")
    s = float(np.std(values))
    return s if s > 1e-9 else 0.0


def ratio(a: float, b: float) -> float:
    """a / b without clamping: inf where only b is 0, NaN where both are."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))
