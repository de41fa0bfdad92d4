"""The causal video VAE (Wan2.1's `wan/modules/vae.py`), with a functional streaming decoder.

Parameter names are the official Wan names, so Wan checkpoints load without renaming.
Videos are [B, 3, T, H, W] in [-1, 1]; latents are [B, z, T', h, w], normalised per channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import nn

from avatar_engine.config import VAE_KERNEL, VAEConfig
from avatar_engine.vae.layers import (
    AttentionBlock,
    Cache,
    CausalConv3d,
    CausalSequential,
    Head,
    ResidualBlock,
    RMSNorm,
    frames_to_video,
    middle_block,
    run_causal,
    video_to_frames,
)
from avatar_engine.vae.updown import Downsample, Upsample

RGB = 3


@dataclass(frozen=True)
class DecoderState:
    """What one stream's decoder carries from a chunk to the next (None before the first)."""

    # Past input frames of every causal conv, nested like the decoder's modules; fixed shapes
    # from the first chunk on.
    caches: Cache
    # Latent frames decoded so far in this stream.
    latent_frames: int


class Encoder3d(nn.Module):
    """Frames to latent moments: stem conv, stages of residual blocks and downsamples, middle,
    head (Wan's Encoder3d)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        dims = cfg.encoder_dims
        self.conv1 = CausalConv3d(RGB, dims[0], VAE_KERNEL)
        layers: list[nn.Module] = []
        for stage, (in_dim, out_dim) in enumerate(pairwise(dims)):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if stage < len(cfg.temporal_downsample):
                layers.append(Downsample(out_dim, temporal=cfg.temporal_downsample[stage]))
        self.downsamples = CausalSequential(*layers)
        self.middle = middle_block(dims[-1])
        self.head = Head(dims[-1], 2 * cfg.z_dim)  # mean and log-variance

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, Cache]:
        """x: [T, B, H, W, 3] frames -> [T', B, h, w, 2z]."""
        return run_causal((self.conv1, self.downsamples, self.middle, self.head), x, cache)


class Decoder3d(nn.Module):
    """Latent frames to RGB frames: stem conv, middle, stages of residual blocks and upsamples,
    head (Wan's Decoder3d)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        dims = cfg.decoder_dims
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], VAE_KERNEL)
        self.middle = middle_block(dims[0])
        layers: list[nn.Module] = []
        for stage, (in_dim, out_dim) in enumerate(pairwise(dims)):
            if stage > 0:
                in_dim //= 2  # the previous stage's upsample halved the width
            for _ in range(cfg.decoder_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if stage < len(cfg.temporal_upsample):
                layers.append(Upsample(out_dim, temporal=cfg.temporal_upsample[stage]))
        self.upsamples = CausalSequential(*layers)
        self.head = Head(dims[-1], RGB)

    def forward(self, x: torch.Tensor, cache: Cache = None) -> tuple[torch.Tensor, Cache]:
        """x: [T, B, h, w, z] frames -> [T', B, H, W, 3]."""
        return run_causal((self.conv1, self.middle, self.upsamples, self.head), x, cache)


class WanVAE(nn.Module):
    """Encoder, decoder and the pointwise quant convs between them and the latent."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder3d(cfg)
        self.conv1 = CausalConv3d(2 * cfg.z_dim, 2 * cfg.z_dim, 1)  # Wan's quant conv
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)  # Wan's post-quant conv
        self.decoder = Decoder3d(cfg)
        # Not in checkpoints: they come from the config (see init_latent_stats).
        self.register_buffer("latent_mean", torch.tensor(cfg.latent_mean), persistent=False)
        self.register_buffer("latent_std", torch.tensor(cfg.latent_std), persistent=False)

    # -- encoding --------------------------------------------------------------------------

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """A reference image as one latent frame.

        Args:
            image: [B, 3, H, W] in [-1, 1].

        Returns:
            [B, z, H/8, W/8] normalised latent (the posterior mean).
        """
        return self.encode_video(image[:, :, None])[:, :, 0]

    def encode_video(
        self, video: torch.Tensor, *, latent_frames_per_call: int | None = None
    ) -> torch.Tensor:
        """A clip as latent frames: frame 0 alone, then each group of 4 frames.

        Args:
            video: [B, 3, T, H, W] in [-1, 1], T = 1 + 4n.
            latent_frames_per_call: encode this many latent frames at a time to bound memory
                (the result is the same); None encodes the clip in one call.

        Returns:
            [B, z, 1 + n, H/8, W/8] normalised latent (the posterior mean, deterministic).
        """
        st, sh, sw = self.cfg.stride
        if video.dim() != 5 or video.shape[1] != RGB:
            raise ValueError(f"encode takes RGB video [B, 3, T, H, W], got {tuple(video.shape)}")
        frames, height, width = video.shape[2:]
        if (frames - 1) % st or height % sh or width % sw:
            raise ValueError(
                f"video of {frames} frames at {height}x{width} cannot be encoded: it needs "
                f"1 + {st}*n frames and a size that is a multiple of {sh}x{sw}"
            )
        if latent_frames_per_call is not None and latent_frames_per_call < 1:
            raise ValueError("latent_frames_per_call must be at least 1 (or None)")
        x = video_to_frames(video.to(self.conv1.weight.dtype))  # [T, B, H, W, 3]
        step = frames if latent_frames_per_call is None else st * latent_frames_per_call
        bounds = [0, *range(1 + step, frames, step), frames]  # the first call also has frame 0
        out, cache = [], None
        for start, stop in pairwise(bounds):
            moments, cache = self.encoder(x[start:stop], cache)  # [T', B, h, w, 2z]
            out.append(moments)
        moments, _ = self.conv1(torch.cat(out))
        mu = frames_to_video(moments[..., : self.cfg.z_dim])  # [B, z, T', h, w]
        return self.normalize(mu)

    def normalize(self, mu: torch.Tensor) -> torch.Tensor:
        """[B, z, ...] raw posterior mean -> (mu - mean) / std, in mu's dtype."""
        mean, std = self._stats(mu)
        return ((mu.float() - mean) / std).to(mu.dtype)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """[B, z, ...] normalised latent -> raw latent z * std + mean, in z's dtype."""
        mean, std = self._stats(z)
        return (z.float() * std + mean).to(z.dtype)

    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (-1,) + (1,) * (z.dim() - 2)  # broadcast over [B, z, ...]
        return self.latent_mean.float().view(shape), self.latent_std.float().view(shape)

    # -- decoding --------------------------------------------------------------------------

    def decode(
        self, z: torch.Tensor, state: DecoderState | None = None, *, clamp: bool = True
    ) -> tuple[torch.Tensor, DecoderState]:
        """Decode the next chunk of a latent stream.

        Decoding a stream chunk by chunk gives the same frames as decoding it in one call.

        Args:
            z: [B, z, T, h, w] normalised latent frames, T >= 1.
            state: returned by the previous call of this stream; None starts a stream.
            clamp: clip the frames to [-1, 1]; training turns it off, since a clip has no
                gradient where it bites.

        Returns:
            frames [B, 3, T', 8h, 8w] in [-1, 1] (a view of a frame-major [T', B, 8h, 8w, 3]
            buffer), with T' = 1 + 4(T - 1) for the first chunk and 4T after; and the new state.
        """
        if z.dim() != 5 or z.shape[1] != self.cfg.z_dim or z.shape[2] < 1:
            raise ValueError(
                f"decode takes latents [B, {self.cfg.z_dim}, T >= 1, h, w], got "
                f"{tuple(z.shape)}; check that the VAE preset matches the DiT's"
            )
        raw = self.denormalize(z.float()).to(self.conv2.weight.dtype)
        x = video_to_frames(raw)  # [T, B, h, w, z]
        x, _ = self.conv2(x)
        caches = None if state is None else state.caches
        frames, caches = self.decoder(x, caches)  # [T', B, H, W, 3]
        seen = 0 if state is None else state.latent_frames
        if clamp:
            frames = frames.clamp_(-1.0, 1.0)
        return frames_to_video(frames), DecoderState(caches, seen + z.shape[2])

    # -- weights ---------------------------------------------------------------------------

    def init_latent_stats(self, device: torch.device | str) -> None:
        """(Re)create the latent statistics from the config, e.g. after building on meta."""
        self.latent_mean = torch.tensor(self.cfg.latent_mean, device=device)
        self.latent_std = torch.tensor(self.cfg.latent_std, device=device)

    def to_compute_dtype(self, dtype: torch.dtype) -> WanVAE:
        """Cast the weights; the latent statistics stay fp32."""
        self.to(dtype)
        self.init_latent_stats(self.latent_mean.device)
        return self

    def init_weights(self) -> WanVAE:
        """Fresh initialisation (for training from scratch and tests)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d):
                module.reset_parameters()
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.gamma)
        for module in self.modules():
            if isinstance(module, AttentionBlock):
                nn.init.zeros_(module.proj.weight)  # as Wan: the block starts as the identity
        self.init_latent_stats(self.latent_mean.device)
        return self
