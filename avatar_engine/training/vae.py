"""Stage 1: the small causal VAE, trained as an autoencoder on windows of training clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.training.data.pool import ClipPool, pixels
from avatar_engine.training.loop import TrainLoop, cosine_lr, set_lr
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.weights import random_vae

LATENT_PENALTY = 1e-4  # keeps the latents' scale bounded without a KL term


def vae_loss(vae: WanVAE, video: torch.Tensor) -> dict[str, torch.Tensor]:
    """Args: video [B, 3, T, H, W] in [-1, 1], T = 1 + 4n."""
    z = vae.encode_video(video)
    recon, _ = vae.decode(z)
    l1 = (recon - video).abs().mean()
    mse = (recon - video).square().mean()
    return {"loss": l1 + mse + LATENT_PENALTY * z.square().mean(), "l1": l1, "mse": mse}


def train_vae(
    preset: Preset,
    run_dir: Path | str,
    *,
    steps: int,
    batch: int = 2,
    window_frames: int = 9,
    lr: float = 2e-3,
    seed: int = 0,
    pool_size: int = 200,
) -> WanVAE:
    """Train (or resume) the preset's VAE; returns it in eval mode."""
    torch.manual_seed(seed)
    geometry = FrameGeometry.of_preset(preset)
    vae = random_vae(preset.vae, device="cpu", dtype=torch.float32, seed=seed).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    loop = TrainLoop(
        run_dir, modules={"vae": vae}, optimizers={"vae": opt}, total=steps, desc="vae"
    )
    pool = ClipPool(
        seed, geometry=geometry, size=preset.stream.height, latent_frames=7, capacity=pool_size
    )
    rng = np.random.default_rng(seed + 1)

    def step(i: int) -> dict[str, float]:
        set_lr(opt, cosine_lr(i, steps, peak=lr))
        windows = []
        for clip in pool.sample(batch):
            start = 4 * int(rng.integers(0, (clip.video.shape[0] - window_frames) // 4 + 1))
            windows.append(pixels(clip.video[start : start + window_frames]))  # [T, 3, H, W]
        video = torch.stack(windows).transpose(1, 2)  # [B, 3, T, H, W]
        losses = vae_loss(vae, video)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["psnr"] = float(10 * torch.log10(4 / losses["mse"].detach()))
        return out

    loop.run(step)
    return vae.eval()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images in [-1, 1]."""
    return float(10 * torch.log10(4 / F.mse_loss(a, b)))
