"""The hand-offs along a stream: the DiT's latent chunk to the decoder, the decoder's video
chunk to whoever shows it. Below both the DiT (session.py) and the VAE (vae/chunk_decoder.py), which
each import them and never each other."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatar_engine.config import DiTConfig, StreamConfig


def chunk_latent_shape(cfg: DiTConfig, stream: StreamConfig, batch: int) -> tuple[int, ...]:
    """[B, z, Fc, h, w]: one chunk's latents."""
    return (batch, cfg.out_dim, stream.chunk_latent_frames, stream.latent_h, stream.latent_w)


@dataclass(frozen=True)
class LatentChunk:
    """One chunk handed from the DiT to the decoder."""

    index: int  # position in the stream; chunk 0 holds the reference image
    latents: torch.Tensor  # [B, z, Fc, h, w] denoised latents, fp32
    first_frame: int  # stream index of the first video frame this chunk decodes to
    num_frames: int  # video frames it decodes to (1 + 4·(Fc−1) for chunk 0, 4·Fc after)
    speaking: torch.Tensor  # [B, K] bool: who was speaking in this chunk


@dataclass(frozen=True)
class VideoChunk:
    """One chunk of video, ready to show."""

    index: int  # chunk index in the stream
    first_frame: int  # stream index of the chunk's first video frame
    frames: torch.Tensor  # [B, T, H, W, 3] uint8 RGB, on the CPU
    pts: torch.Tensor  # [T] float64 presentation time of each frame, seconds from stream start
    speaking: torch.Tensor  # [B, K] bool: who was speaking in this chunk
