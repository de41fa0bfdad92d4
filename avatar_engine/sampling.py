"""Rectified flow and the few-step student sampler.

Convention: x_t = t·x1 + (1 − t)·x0, with x1 data and x0 Gaussian noise, so t = 0 is pure noise
and the velocity is x1 − x0. Wan networks are trained the other way round (noise level
sigma = 1 − t, scaled to 1000 timesteps, predicting x0 − x1); the conversion lives here alone so
pretrained Wan trunks work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

NUM_TRAIN_TIMESTEPS = 1000

# (step index, x_t, model timestep [B]) -> raw network output (Wan convention)
Denoiser = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def interpolate(x1: torch.Tensor, x0: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """x_t on the straight path from noise x0 (t = 0) to data x1 (t = 1)."""
    return t * x1 + (1 - t) * x0


def target_velocity(x1: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    return x1 - x0


def model_timestep(t: float | torch.Tensor) -> float | torch.Tensor:
    """Flow time t -> the network's timestep input (Wan: 1000 = noise)."""
    return (1 - t) * NUM_TRAIN_TIMESTEPS


def velocity_from_output(output: torch.Tensor) -> torch.Tensor:
    """The network predicts x0 − x1 (Wan); the flow velocity is x1 − x0."""
    return -output


@dataclass(frozen=True)
class FewStepSampler:
    """Denoise from pure noise through a short list of flow times, re-noising between steps.

    Every chunk uses the same time at a given step, which is what lets the K/V caches be kept
    per step.
    """

    times: Sequence[float]  # increasing, times[0] usually 0 (pure noise)

    def sample(
        self,
        denoise: Denoiser,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator,
        device: torch.device,
        timesteps: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Args:
            denoise: runs the network for (step, x_t, timestep).
            shape: [B, C, F, h, w] of the latents.
            generator: the only source of noise, so a seed fixes the result.
            timesteps: per step, the network timestep as a [B] tensor on `device`.

        Returns:
            The predicted data x1, fp32.
        """
        x = torch.randn(shape, generator=generator, device=device)
        for step, t in enumerate(self.times):
            velocity = velocity_from_output(denoise(step, x, timesteps[step]).float())
            data = x + (1 - t) * velocity
            if step + 1 < len(self.times):
                noise = torch.randn(shape, generator=generator, device=device)
                x = interpolate(data, noise, self.times[step + 1])
        return data

    def step_timesteps(self, batch: int, device: torch.device) -> list[torch.Tensor]:
        """Network timesteps of every step, made once so the hot path allocates none."""
        return [torch.full((batch,), model_timestep(t), device=device) for t in self.times]
