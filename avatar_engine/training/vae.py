"""Stage 1: the small causal VAE, trained as an autoencoder on windows of training clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.training.data.clips import make_clip
from avatar_engine.training.data.motion import mouth_mask
from avatar_engine.training.data.pool import ClipPool
from avatar_engine.training.loop import TrainLoop, cosine_lr, load_trained, set_lr
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.video import from_uint8_frames
from avatar_engine.vae.weights import random_vae

LATENT_PENALTY = 1e-4  # keeps the latents' scale bounded without a KL term
CHROMA_WEIGHT = 4.0  # extra weight on colour errors: without it the VAE learns brightness first
# and carries colour poorly for thousands of steps
MOTION_WEIGHT = 4.0  # weight on the error of frame-to-frame changes, and
MOUTH_WEIGHT = 10.0  # extra weight on the pixels around each mouth: on the plain mean the VAE
# keeps the picture and drops the mouth's motion, the very signal the DiT must learn; these two
# win part of it back (docs/TRAINING.md, "What the mouth runs taught")


def vae_loss(vae: WanVAE, video: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """Args: video [B, 3, T, H, W] in [-1, 1], T = 1 + 4n; weights [B, 1, 1, H, W] per pixel."""
    z = vae.encode_video(video)
    recon, _ = vae.decode(z, clamp=False)
    error = recon - video  # [B, 3, T, H, W]

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * weights).mean() / weights.mean()

    l1 = mean(error.abs())
    mse = mean(error.square())
    chroma = mean((error - error.mean(dim=1, keepdim=True)).square())
    motion = mean((error[:, :, 1:] - error[:, :, :-1]).abs())
    loss = l1 + mse + CHROMA_WEIGHT * chroma + MOTION_WEIGHT * motion
    loss = loss + LATENT_PENALTY * z.square().mean()
    return {"loss": loss, "l1": l1, "mse": mse, "chroma": chroma, "motion": motion}


def _aligned(start: float, most: int) -> int:
    """A crop's first row or column: on the 8-pixel latent grid and inside the frame."""
    return int(min(max(start, 0), most)) // 8 * 8


def train_vae(
    preset: Preset,
    run_dir: Path | str,
    *,
    steps: int,
    batch: int = 6,
    window_frames: int = 5,
    crop: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    pool_size: int = 200,
    init_from: Path | str | None = None,
    decoder_only: bool = False,
    long_window: int = 0,
    long_crop: int = 32,
    mouth_crops: float = 0.5,
) -> WanVAE:
    """Train (or resume) the preset's VAE on random crops of clip windows (it is fully
    convolutional but for a global attention block, so crops teach it the full frame's
    statistics at a fraction of the cost); returns it in eval mode.

    init_from starts from another run's VAE; decoder_only then keeps its encoder (and so its
    latent space, which the DiT is trained in) fixed and sharpens the decoder alone.

    long_window > 0 makes every other step a window of that many frames on small crops: each
    causal conv sees two frames back, so the encoder's and decoder's outputs depend on the
    last dozen latent frames, and only windows longer than that teach the steady state a
    stream (or a 7-chunk clip) runs in. Short windows alone leave it untrained: frames past
    the first few latent frames then decode to the wrong colours.

    mouth_crops is the share of crops centred on a character's mouth, where the motion is.
    """
    torch.manual_seed(seed)
    geometry = FrameGeometry.of_preset(preset)
    vae = random_vae(preset.vae, device="cpu", dtype=torch.float32, seed=seed)
    if init_from is not None:
        load_trained(init_from, "vae", vae)
    vae.train()
    trained = [*vae.decoder.parameters(), *vae.conv2.parameters()] if decoder_only else None
    if decoder_only:
        vae.requires_grad_(False)
        for param in trained:
            param.requires_grad_(True)
    opt = torch.optim.AdamW(trained or vae.parameters(), lr=lr, weight_decay=0.0)
    loop = TrainLoop(
        run_dir, modules={"vae": vae}, optimizers={"vae": opt}, total=steps, desc="vae"
    )
    clip_latents = max(7, geometry.latent_frames_for(long_window))
    pool = ClipPool(
        seed,
        geometry=geometry,
        size=preset.stream.height,
        latent_frames=clip_latents,
        capacity=pool_size,
    )
    rng = np.random.default_rng(seed + 1)

    def step(i: int) -> dict[str, float]:
        set_lr(opt, cosine_lr(i, steps, peak=lr))
        windows, masks = [], []
        length, size = (long_window, long_crop) if long_window and i % 2 else (window_frames, crop)
        for clip in pool.sample(batch):
            frames, height, width = clip.video.shape[:3]
            start = 4 * int(rng.integers(0, (frames - length) // 4 + 1))
            if rng.random() < mouth_crops:
                mx, my, _ = clip.mouths[int(rng.integers(len(clip.mouths)))]
                top, left = (
                    _aligned(c * n - size / 2, n - min(size, n))
                    for c, n in ((my, height), (mx, width))
                )
            else:
                top, left = (
                    int(rng.integers(0, n - min(size, n) + 1)) // 8 * 8 for n in (height, width)
                )
            window = clip.video[start : start + length, top : top + size, left : left + size]
            windows.append(from_uint8_frames(window))  # [T, 3, size, size]
            masks.append(mouth_mask(clip.mouths, height, (top, left), window.shape[1:3]))
        video = torch.stack(windows).transpose(1, 2)  # [B, 3, T, H, W]
        weights = 1 + MOUTH_WEIGHT * torch.stack(masks)[:, None, None]
        losses = vae_loss(vae, video, weights)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["psnr"] = float(10 * torch.log10(4 / losses["mse"].detach()))
        return out

    loop.run(step)
    return vae.eval()


def latent_statistics(
    vae: WanVAE, preset: Preset, *, clips: int = 24, seed: int = 1
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the raw posterior means over whole training
    clips (as Wan's were measured): the DiT sees latents normalised by them, so they belong
    in the VAE preset once its weights are final."""
    geometry = FrameGeometry.of_preset(preset)
    raw = []
    with torch.no_grad():
        for index in range(clips):
            clip = make_clip(
                seed, index, geometry=geometry, size=preset.stream.height, latent_frames=7
            )
            frames = (clip.video * 255).round().to(torch.uint8)
            video = from_uint8_frames(frames).transpose(0, 1)[None]
            raw.append(vae.denormalize(vae.encode_video(video)).transpose(0, 1).flatten(1))
    values = torch.cat(raw, dim=1)  # [z, N]
    return values.mean(1).tolist(), values.std(1).tolist()
