"""teacher_speech: the lip-sync, silence and identity figures of a teacher's ODE, per guidance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatar_engine.training.teacher import new_speaker
from avatar_engine.training.teacher_check import teacher_speech
from avatar_engine.vae.weights import random_vae
from tests.avatar_engine.training.conftest import MICRO_TRAIN


def test_guidance_zero_samples_the_listening_teacher_and_others_differ():
    torch.manual_seed(0)
    vae = random_vae(MICRO_TRAIN.vae, device="cpu", dtype=torch.float32, seed=0).eval()
    teacher = new_speaker(MICRO_TRAIN, seed=0).eval()
    figures = teacher_speech(teacher, vae, MICRO_TRAIN, [0.0, 1.0, 3.0], clips=1)
    assert sorted(figures) == [0.0, 1.0, 3.0]
    # guidance 0 is the all-listening velocity itself: the same frames as the silent sample
    assert figures[0.0]["silence_ratio"] == pytest.approx(1.0)
    assert figures[1.0]["silence_ratio"] != pytest.approx(figures[3.0]["silence_ratio"])
    for f in figures.values():
        assert math.isfinite(f["silence_ratio"]) and f["silence_ratio"] > 0
        assert -1 <= f["lipsync"] <= 1
        # a random VAE draws no face: the analyser finds none, so there is no identity figure
        assert math.isnan(f["identity"])


def test_guidance_on_the_mouths_only_changes_the_samples_less():
    torch.manual_seed(0)
    vae = random_vae(MICRO_TRAIN.vae, device="cpu", dtype=torch.float32, seed=0).eval()
    teacher = new_speaker(MICRO_TRAIN, seed=0).eval()
    plain = teacher_speech(teacher, vae, MICRO_TRAIN, [1.0, 3.0], clips=1)
    mouths = teacher_speech(teacher, vae, MICRO_TRAIN, [1.0, 3.0], clips=1, mouths_only=True)
    np.testing.assert_equal(mouths[1.0], plain[1.0])  # NaN identity equals NaN here
    assert mouths[3.0]["silence_ratio"] != plain[3.0]["silence_ratio"]
