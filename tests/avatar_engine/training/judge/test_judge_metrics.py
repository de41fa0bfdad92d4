"""The judge's metrics on synthetic inputs: each measures what it claims and nothing else."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from avatar_engine.training.judge import metrics


def face_landmarks(gap: float) -> np.ndarray:
    """[68, 2] a schematic face: eyes 40 px apart, inner lips `gap` px apart."""
    points = np.zeros((68, 2))
    points[36:42] = (30, 40)
    points[42:48] = (70, 40)
    points[48:60] = [(35 + 30 * np.cos(a), 80 + 8 * np.sin(a)) for a in np.linspace(0, 6.2, 12)]
    points[60:68] = (50, 80)
    points[61:64, 1] -= gap / 2  # upper inner lip
    points[65:68, 1] += gap / 2  # lower inner lip
    return points


def test_the_opening_is_the_inner_lip_gap_over_the_eye_distance():
    opening = metrics.lip_opening(np.stack([face_landmarks(g) for g in (0, 4, 12)]))
    assert opening == pytest.approx([0.0, 0.1, 0.3])


def test_lip_sync_finds_a_late_mouth_and_its_lag():
    rng = np.random.default_rng(0)
    env = np.convolve(rng.random(200), np.ones(4) / 4, mode="same")
    opening = np.roll(env, 2)  # the mouth follows the sound two frames late
    sync, lag = metrics.lagged_sync(opening, env, np.ones(200, bool))
    assert sync == pytest.approx(1.0, abs=0.02) and lag == 2


def test_shifted_and_other_audio_controls_score_low():
    rng = np.random.default_rng(1)
    env = np.convolve(rng.random(300), np.ones(4) / 4, mode="same")
    other = np.convolve(rng.random(120), np.ones(4) / 4, mode="same")
    talking = np.ones(300, bool)
    assert metrics.lagged_sync(env, metrics.shifted(env, 25), talking)[0] < 0.35
    assert metrics.lagged_sync(env, metrics.fitted(other, 300), talking)[0] < 0.35
    assert len(metrics.shifted(env, 25)) == 300 and not np.allclose(metrics.shifted(env, 25), env)


def test_a_frozen_mouth_correlates_with_nothing():
    env = np.random.default_rng(2).random(100)
    assert metrics.lagged_sync(np.full(100, 0.2), env, np.ones(100, bool)) == (0.0, 0)


def test_lip_sync_is_taken_only_over_the_given_frames():
    rng = np.random.default_rng(3)
    env = rng.random(100)
    opening = np.where(np.arange(100) < 50, env, rng.random(100))
    first = np.arange(100) < 50
    assert metrics.lagged_sync(opening, env, first)[0] > 0.99
    assert metrics.lagged_sync(opening, env, ~first)[0] < 0.5


def test_a_blurred_mouth_is_less_sharp():
    rng = np.random.default_rng(4)
    image = (rng.random((100, 100, 3)) * 255).astype(np.uint8)
    landmarks = face_landmarks(6)
    sharp = metrics.lip_detail(image, landmarks, eyes=40.0)
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2)))
    assert metrics.lip_detail(blurred, landmarks, eyes=40.0) < 0.1 * sharp
    # a face shown twice as large is measured at the same eye distance
    smooth = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.5)))
    big = np.asarray(Image.fromarray(smooth).resize((200, 200), Image.BICUBIC))
    measured = metrics.lip_detail(smooth, landmarks, eyes=40.0)
    assert metrics.lip_detail(big, landmarks * 2, eyes=40.0) == pytest.approx(measured, rel=0.35)


def test_the_envelope_is_the_rms_per_frame():
    audio = np.concatenate([np.zeros(640), np.full(640, 0.5), np.zeros(100)])
    assert metrics.envelope(audio, 3, 640) == pytest.approx([0.0, 0.5, 0.0])


def test_ratios_are_not_clamped():
    assert metrics.ratio(1.0, 0.0) == math.inf
    assert math.isnan(metrics.ratio(0.0, 0.0))
    assert metrics.ratio(1.0, 4.0) == 0.25
