"""Stage 2: the bidirectional flow-matching teacher over clips of 7 chunks (the paper's Eq. 3:
E ||v_theta(x_t, t, c) - (x1 - x0)||^2 with x_t = t·x1 + (1 - t)·x0)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avatar_engine.audio.encoder import build_encoder
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.model.dit import WanDiT
from avatar_engine.model.window import ClipWindow
from avatar_engine.sampling import (
    interpolate,
    model_timestep,
    target_velocity,
    velocity_from_output,
)
from avatar_engine.training.batch import DiTInputs, dit_inputs, encode_clip
from avatar_engine.training.data.clips import KIND_WEIGHTS
from avatar_engine.training.data.pool import ClipPool
from avatar_engine.training.loop import TrainLoop, cosine_lr, set_lr
from avatar_engine.vae.model import WanVAE
from avatar_engine.weights import random_dit

TEACHER_CHUNKS = 7
# Extra loss weights on the faces' and the mouths' latent cells: the speech shows in a few
# cells of the mouth, and a plain mean spends the model on the background. With the face
# weight alone, the teacher's samples held the mouth still through speech (docs/TRAINING.md).
FACE_WEIGHT = 3.0
MOUTH_WEIGHT = 10.0


class Speaker(nn.Module):
    """The DiT and its learned speech encoder, trained together and saved together."""

    def __init__(self, dit: WanDiT, encoder: nn.Module):
        super().__init__()
        self.dit, self.encoder = dit, encoder


def velocity(
    dit: WanDiT, inputs: DiTInputs, x: torch.Tensor, t: torch.Tensor, *, window: ClipWindow
) -> torch.Tensor:
    """The flow velocity at x_t; t: [B] flow time (0 = noise)."""
    out = dit.forward_clip(
        x,
        inputs.cond,
        model_timestep(t),
        context=inputs.context,
        audio=inputs.audio,
        window=window,
    )
    return velocity_from_output(out)


def speech_weighted_mse(
    pred: torch.Tensor, target: torch.Tensor, inputs: DiTInputs, *, even_mouths: bool = False
) -> torch.Tensor:
    """Mean squared error over [B, z, F, h, w] latents: a face's cells weigh 1 + FACE_WEIGHT,
    a mouth's MOUTH_WEIGHT more, the rest 1. With even_mouths a small mouth's cells weigh
    more (batch.mouth_cells): a half-size mouth in a pair covers a third of the cells."""
    faces = inputs.audio.face_masks.amax(dim=1)[:, None]  # [B, 1, gh, gw]
    faces = F.interpolate(faces, size=pred.shape[-2:], mode="nearest")[:, 0]
    mouths = inputs.mouths if even_mouths else (inputs.mouths > 0).float()
    weights = 1 + FACE_WEIGHT * faces + MOUTH_WEIGHT * mouths
    weights = weights[:, None, None]  # [B, 1, 1, h, w]
    return ((pred - target).square() * weights).mean() / weights.mean()


def flow_matching_loss(dit: WanDiT, inputs: DiTInputs, *, window: ClipWindow) -> torch.Tensor:
    x1 = inputs.x1
    x0 = torch.randn_like(x1)
    t = torch.sigmoid(torch.randn(x1.shape[0]))  # logit-normal flow times
    xt = interpolate(x1, x0, t.view(-1, 1, 1, 1, 1))
    pred = velocity(dit, inputs, xt, t, window=window)
    return speech_weighted_mse(pred, target_velocity(x1, x0), inputs)


def latent_pool(
    vae: WanVAE,
    preset: Preset,
    seed: int,
    chunks: int,
    capacity: int,
    refresh_every: int = 4,
    kind_weights: tuple[float, float, float] = KIND_WEIGHTS,
) -> tuple[ClipPool, FrameGeometry]:
    geometry = FrameGeometry.of_preset(preset)
    frames = chunks * preset.stream.chunk_latent_frames
    pool = ClipPool(
        seed,
        geometry=geometry,
        size=preset.stream.height,
        latent_frames=frames,
        capacity=capacity,
        refresh_every=refresh_every,
        transform=lambda clip: encode_clip(vae, clip, preset),
        kind_weights=kind_weights,
    )
    return pool, geometry


def new_speaker(preset: Preset, seed: int) -> Speaker:
    geometry = FrameGeometry.of_preset(preset)
    dit = random_dit(preset.dit, device="cpu", dtype=torch.float32, seed=seed)
    return Speaker(dit, build_encoder(preset.audio, geometry))


def train_teacher(
    preset: Preset,
    vae: WanVAE,
    run_dir: Path | str,
    *,
    steps: int,
    batch: int = 2,
    lr: float = 5e-4,
    seed: int = 0,
    pool_size: int = 200,
    chunks: int = TEACHER_CHUNKS,
    init: Speaker | None = None,
) -> Speaker:
    """Train (or resume) the bidirectional teacher; init starts it from another teacher (for
    example one trained in an earlier latent space: it keeps the speech encoder it learned)."""
    torch.manual_seed(seed)
    model = (init or new_speaker(preset, seed)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    loop = TrainLoop(
        run_dir,
        modules={"teacher": model},
        optimizers={"teacher": opt},
        total=steps,
        desc="teacher",
    )
    pool, geometry = latent_pool(vae.eval(), preset, seed, chunks, pool_size)

    def step(i: int) -> dict[str, float]:
        set_lr(opt, cosine_lr(i, steps, peak=lr))
        inputs = dit_inputs(pool.sample(batch), model.encoder, geometry, preset)
        loss = flow_matching_loss(model.dit, inputs, window=ClipWindow.BIDIRECTIONAL)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": float(loss.detach())}

    loop.run(step)
    return model.eval()
