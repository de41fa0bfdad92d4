"""The DiT stages' losses: faces weighted, and the teacher's ODE guided by the speech."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from avatar_engine.training.batch import dit_inputs
from avatar_engine.training.distill import silenced, teacher_ode
from avatar_engine.training.teacher import (
    FACE_WEIGHT,
    face_weighted_mse,
    latent_pool,
    new_speaker,
)
from avatar_engine.vae.weights import random_vae
from tests.avatar_engine.training.conftest import MICRO_TRAIN


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    vae = random_vae(MICRO_TRAIN.vae, device="cpu", dtype=torch.float32, seed=0)
    speaker = new_speaker(MICRO_TRAIN, seed=0).eval()
    pool, geometry = latent_pool(vae, MICRO_TRAIN, seed=5, chunks=2, capacity=2)
    with torch.no_grad():
        inputs = dit_inputs(pool.sample(1), speaker.encoder, geometry, MICRO_TRAIN)
    speaking = torch.zeros_like(inputs.audio.speaking)
    speaking[:, 0] = True  # character 0 speaks throughout, so the two conditions differ
    inputs = dataclasses.replace(inputs, audio=dataclasses.replace(inputs.audio, speaking=speaking))
    return speaker, inputs


def test_face_cells_weigh_one_plus_face_weight_and_a_uniform_error_stays_itself(setup):
    _, inputs = setup
    x = inputs.x1
    faces = inputs.audio.face_masks.amax(dim=1)[:, None]  # [B, 1, gh, gw]
    cells = torch.nn.functional.interpolate(faces, size=x.shape[-2:], mode="nearest")[:, :, None]
    assert 0 < cells.mean() < 1  # the clip has a face and a background
    assert face_weighted_mse(x + 1, x, inputs) == pytest.approx(1.0)
    inside = face_weighted_mse(x + cells, x, inputs)
    outside = face_weighted_mse(x + (1 - cells), x, inputs)
    share = float(cells.mean())
    assert float(inside / outside) == pytest.approx((1 + FACE_WEIGHT) * share / (1 - share))


def test_guidance_one_is_the_plain_ode_and_zero_the_all_listening_one(setup):
    speaker, inputs = setup
    x0 = torch.randn_like(inputs.x1)
    times = (0.0, 0.5)
    plain = teacher_ode(speaker.dit, inputs, x0, times)
    same = teacher_ode(speaker.dit, inputs, x0, times, guidance=1.0)
    quiet = teacher_ode(speaker.dit, silenced(inputs), x0, times)
    unguided = teacher_ode(speaker.dit, inputs, x0, times, guidance=0.0)
    assert torch.equal(plain[1], same[1])
    assert torch.allclose(unguided[1], quiet[1], atol=1e-5)
    assert not torch.allclose(plain[1], quiet[1], atol=1e-3)
    guided = teacher_ode(speaker.dit, inputs, x0, times, guidance=3.0)[1]
    assert (guided - quiet[1]).norm() > (plain[1] - quiet[1]).norm()
