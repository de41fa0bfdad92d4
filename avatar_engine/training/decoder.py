"""The reference decoder's stage: it learns to draw, from the VAE's latents and the clip's
still picture, the frames those latents were encoded from (vae/reference_decoder.py).

The VAE's encoder stays as it is, so the latent space, its statistics and every DiT trained
in it stay valid: this stage can follow any VAE and any teacher or student.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.training.data.clips import Clip
from avatar_engine.training.data.motion import mouth_mask
from avatar_engine.training.data.pool import ClipPool
from avatar_engine.training.loop import TrainLoop, cosine_lr, load_trained, set_lr
from avatar_engine.training.vae import CHROMA_WEIGHT, MOTION_WEIGHT, MOUTH_WEIGHT
from avatar_engine.vae.detail import encode_still
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.reference_decoder import ReferenceDecoder, StillPicture
from avatar_engine.vae.video import from_uint8_frames

CLIP_LATENTS = 7  # latent frames per training clip (25 frames)
WINDOW_LATENTS = 3  # latent frames decoded per sample: one chunk
LATENT_NOISE = 0.2  # the most noise added to the latents, in their normalised units: the DiT's
# latents are about 0.3 RMS off the data's, and a decoder that only met exact ones is brittle
EDGE_WEIGHT = 2.0  # weight on the error of the frames' spatial gradients: sharp edges


class _Encoded:
    """A clip as the decoder trains on it: its frames, picture, mouths and latents."""

    def __init__(self, clip: Clip, vae: WanVAE):
        self.video = (clip.video * 255).round().to(torch.uint8)  # [T, H, W, 3]
        self.picture = (clip.reference * 255).round().to(torch.uint8)  # [H, W, 3]
        self.mouths = clip.mouths
        with torch.no_grad():
            pixels = from_uint8_frames(self.video).transpose(0, 1)[None]  # [1, 3, T, H, W]
            self.latents = vae.encode_video(pixels)[0]  # [z, F, h, w]
        still = encode_still(vae, self.picture[None])[:, :, -1]  # [1, z, h, w]
        self.still = StillPicture(self.picture[None], still)


def decoder_loss(
    frames: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Squared errors: of the frames, their colour, their frame-to-frame change and their
    edges. (On absolute errors the decoder stayed where it starts, the picture unchanged: the
    sign-sized pull of every still pixel's small error drowns the mouth's.)

    Args: frames and target [B, 3, T, H, W] in [-1, 1]; weights [B, 1, 1, H, W].
    """
    error = frames - target

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x.square() * weights[..., : x.shape[-2], : x.shape[-1]]).mean() / weights.mean()

    mse = mean(error)
    chroma = mean(error - error.mean(dim=1, keepdim=True))
    motion = mean(error[:, :, 1:] - error[:, :, :-1])
    edges = mean(error[..., 1:, :] - error[..., :-1, :]) + mean(
        error[..., :, 1:] - error[..., :, :-1]
    )
    loss = mse + CHROMA_WEIGHT * chroma + MOTION_WEIGHT * motion + EDGE_WEIGHT * edges
    psnr = 10 * torch.log10(4 / error.detach().square().mean())
    return {"loss": loss, "mse": mse, "edges": edges, "psnr": psnr}


def train_decoder(
    preset: Preset,
    vae: WanVAE,
    run_dir: Path | str,
    *,
    steps: int,
    batch: int = 4,
    lr: float = 1e-3,
    seed: int = 0,
    pool_size: int = 96,
    init_from: Path | str | None = None,
) -> ReferenceDecoder:
    """Train (or resume) the reference decoder on clips encoded by `vae` (kept as it is);
    init_from starts from another run's decoder or an exported model's."""
    torch.manual_seed(seed)
    geometry = FrameGeometry.of_preset(preset)
    vae = vae.eval().requires_grad_(False)
    decoder = ReferenceDecoder(preset.vae)
    if init_from is not None:
        load_trained(init_from, "decoder", decoder)
    decoder.train()
    opt = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=0.0)
    loop = TrainLoop(
        run_dir,
        modules={"decoder": decoder},
        optimizers={"decoder": opt},
        total=steps,
        desc="decoder",
    )
    pool = ClipPool(
        seed,
        geometry=geometry,
        size=preset.stream.height,
        latent_frames=CLIP_LATENTS,
        capacity=pool_size,
        refresh_every=4,
        transform=lambda clip: _Encoded(clip, vae),
    )
    rng = np.random.default_rng(seed + 1)
    temporal = preset.vae.stride[0]

    def step(i: int) -> dict[str, float]:
        set_lr(opt, cosine_lr(i, steps, peak=lr))
        start = int(rng.integers(0, CLIP_LATENTS - WINDOW_LATENTS + 1))
        losses = []
        for clip in pool.sample(batch):
            z = clip.latents[None, :, start : start + WINDOW_LATENTS]
            z = z + float(rng.uniform(0, LATENT_NOISE)) * torch.randn_like(z)
            state = decoder.start(clip.still)
            if start:  # as if the stream had decoded the frames before the window
                state = replace(
                    state, previous=clip.latents[None, :, start - 1], latent_frames=start
                )
            frames, _ = decoder.decode(z, state, clamp=False)
            first = 0 if start == 0 else 1 + temporal * (start - 1)
            shown = clip.video[first : first + frames.shape[2]]
            target = from_uint8_frames(shown).transpose(0, 1)[None]  # [1, 3, T, H, W]
            height = clip.video.shape[1]
            mask = mouth_mask(clip.mouths, height, (0, 0), clip.video.shape[1:3])
            weights = (1 + MOUTH_WEIGHT * mask)[None, None, None]
            losses.append(decoder_loss(frames, target, weights))
        total = {k: torch.stack([loss[k] for loss in losses]).mean() for k in losses[0]}
        opt.zero_grad(set_to_none=True)
        total["loss"].backward()
        opt.step()
        return {k: float(v.detach()) for k, v in total.items()}

    loop.run(step)
    return decoder.eval()
