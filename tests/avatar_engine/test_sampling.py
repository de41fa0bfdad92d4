"""Rectified flow conventions and the few-step sampler."""

from __future__ import annotations

import pytest
import torch

from avatar_engine.sampling import (
    FewStepSampler,
    interpolate,
    model_timestep,
    target_velocity,
    velocity_from_output,
)


def test_flow_path_and_velocity():
    x1, x0 = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.equal(interpolate(x1, x0, 0.0), x0)
    assert torch.equal(interpolate(x1, x0, 1.0), x1)
    t = 0.3
    step = interpolate(x1, x0, t + 1e-3) - interpolate(x1, x0, t)
    assert torch.allclose(step / 1e-3, target_velocity(x1, x0), atol=1e-3)
    assert model_timestep(0.0) == 1000 and model_timestep(1.0) == 0  # Wan: 1000 = noise


def test_oracle_denoiser_recovers_the_data():
    """A network that knows the data (in Wan's output convention) is sampled back to it."""
    data = torch.randn(1, 4, 3, 2, 2)
    seen = []

    def oracle(step, x, timestep):
        t = 1 - timestep[0] / 1000
        seen.append(float(t))
        velocity = (data - x) / (1 - t)
        return -velocity  # Wan predicts noise - data

    sampler = FewStepSampler((0.0, 0.5, 0.8))
    out = sampler.sample(
        oracle,
        data.shape,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        timesteps=sampler.step_timesteps(1, torch.device("cpu")),
    )
    assert seen == pytest.approx([0.0, 0.5, 0.8])
    assert torch.allclose(out, data, atol=1e-6)
    assert torch.allclose(velocity_from_output(-data), data)


def test_same_seed_same_samples():
    sampler = FewStepSampler((0.0, 0.5))
    timesteps = sampler.step_timesteps(2, torch.device("cpu"))

    def run(seed):
        return sampler.sample(
            lambda step, x, t: x * 0.5,
            (2, 3),
            generator=torch.Generator().manual_seed(seed),
            device=torch.device("cpu"),
            timesteps=timesteps,
        )

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
