"""A small decoder for the embedded model's latents that sees the scene's picture.

The embedded VAE's own decoder draws every frame from the latents alone: at 16x16 latent
cells for a 128x128 frame it can only draw a blur of a photograph, and it costs twice what the
DiT does per chunk. Yet nearly all of every frame is the picture the stream started from; only
the mouth, the eyes and a little sway move. This decoder is given the picture once per stream
(its features at four scales, computed once) and draws each frame as the picture plus a
change: where nothing moves it returns the picture itself, sharp, and its capacity goes to the
mouth. It reads each latent frame beside the latent of the picture held still, so what has
changed is there to see. The latents are the VAE's (its encoder and the DiT are unchanged),
and it is trained against the frames those latents were encoded from
(avatar_engine/training/decoder.py), as tiny decoders distilled for Wan are (TAEHV).

Streaming is exact by construction: each latent frame decodes to its 4 frames from itself and
the latent frame before it, so the only state between chunks is the previous latent frame.
Like the causal VAE, latent frame 0 of a stream stands for frame 0 alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from avatar_engine.config import VAEConfig
from avatar_engine.vae.video import from_uint8_frames

WIDTHS = (24, 32, 64, 64)  # features at full, 1/2, 1/4 and 1/8 of the frame's side
PICTURE_WIDTHS = (16, 32, 64, 64)  # the picture's features at the same four scales


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.a, self.b = (
            nn.Conv2d(width, width, 3, padding=1),
            nn.Conv2d(width, width, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(F.silu(self.a(x)))


@dataclass(frozen=True)
class StillPicture:
    """The picture a stream animates, at the model's size, and the latent it encodes to held
    still (vae.detail.encode_still's last), against which the latents show what has changed."""

    pixels: torch.Tensor  # [B, H, W, 3] uint8
    latent: torch.Tensor  # [B, z, h, w]

    def to(self, device: torch.device | str) -> StillPicture:
        return StillPicture(self.pixels.to(device), self.latent.to(device))


@dataclass(frozen=True)
class ReferenceState:
    """One stream's decoding state: the picture, its features, the last latent frame."""

    picture: torch.Tensor  # [B, 3, H, W] in [-1, 1]
    still: torch.Tensor  # [B, z, h, w] the latent of the picture held still
    features: tuple[torch.Tensor, ...]  # full, 1/2, 1/4, 1/8 scale
    previous: torch.Tensor | None  # [B, z, h, w], the last latent frame decoded
    latent_frames: int = 0


class ReferenceDecoder(nn.Module):
    """Normalised latents [B, z, T, h, w] and the stream's picture -> RGB frames in [-1, 1]."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.z_dim = cfg.z_dim
        self.temporal = cfg.stride[0]  # frames per latent frame
        if cfg.stride[1:] != (8, 8):
            raise ValueError(f"the reference decoder upsamples by 8, not {cfg.stride[1:]}")
        p = PICTURE_WIDTHS
        self.picture_convs = nn.ModuleList(
            [nn.Conv2d(3, p[0], 3, padding=1)]
            + [nn.Conv2d(p[i - 1], p[i], 3, stride=2, padding=1) for i in range(1, 4)]
        )
        w = WIDTHS
        self.stem = nn.Conv2d(3 * cfg.z_dim + p[3], w[3], 3, padding=1)
        self.coarse = _Residual(w[3])
        self.up32 = nn.Conv2d(w[3] + p[2], w[2], 3, padding=1)
        self.mid = _Residual(w[2])
        self.up64 = nn.Conv2d(w[2] + p[1], w[1], 3, padding=1)
        self.fine = nn.Conv2d(w[1], w[1], 3, padding=1)
        self.up128 = nn.Conv2d(w[1] + p[0], w[0], 3, padding=1)
        self.out = nn.Conv2d(w[0], 3 * self.temporal, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # untrained, it returns the picture
        nn.init.zeros_(self.out.bias)

    def start(self, picture: StillPicture) -> ReferenceState:
        """A stream of `picture` begins."""
        param = self.out.weight
        pixels = from_uint8_frames(picture.pixels).to(param.device, param.dtype)  # [B, 3, H, W]
        features, x = [], pixels
        for conv in self.picture_convs:
            x = F.silu(conv(x))
            features.append(x)
        still = picture.latent.to(param.device, param.dtype)
        return ReferenceState(pixels, still, tuple(features), None)

    def frames(self, z: torch.Tensor, state: ReferenceState) -> torch.Tensor:
        """All `temporal` frames of each latent frame: [B, 3, T * temporal, H, W]."""
        b, _, t, h, w = z.shape
        previous = z[:, :, 0] if state.previous is None else state.previous  # stream start
        before = torch.cat([previous[:, :, None], z[:, :, :-1]], dim=2)
        still = state.still[:, :, None].expand_as(z)
        inputs = torch.cat([z, before, still], dim=1).transpose(1, 2).flatten(0, 1)  # [B*T, 3z, ..]

        def each(feature: torch.Tensor) -> torch.Tensor:  # [B, C, ...] -> [B*T, C, ...]
            # a view (for one stream): the cat below makes the only copy
            return feature.unsqueeze(1).expand(-1, t, *feature.shape[1:]).flatten(0, 1)

        f128, f64, f32, f16 = state.features
        x = self.coarse(F.silu(self.stem(torch.cat([inputs, each(f16)], 1))))
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.mid(F.silu(self.up32(torch.cat([x, each(f32)], 1))))
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = F.silu(self.fine(F.silu(self.up64(torch.cat([x, each(f64)], 1)))))
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = F.silu(self.up128(torch.cat([x, each(f128)], 1)))
        change = self.out(x).view(b, t, self.temporal, 3, 8 * h, 8 * w)
        video = state.picture[:, None, None] + change  # [B, T, temporal, 3, H, W]
        return video.flatten(1, 2).transpose(1, 2)  # [B, 3, T * temporal, H, W]

    def decode(
        self, z: torch.Tensor, state: ReferenceState, *, clamp: bool = True
    ) -> tuple[torch.Tensor, ReferenceState]:
        """The next chunk of a stream, as WanVAE.decode gives it: [B, 3, T', H, W] with
        T' = 1 + temporal * (T - 1) for the stream's first chunk and temporal * T after."""
        if z.dim() != 5 or z.shape[1] != self.z_dim:
            raise ValueError(
                f"decode takes latents [B, {self.z_dim}, T, h, w], got {tuple(z.shape)}"
            )
        video = self.frames(z, state)
        if state.latent_frames == 0:
            video = video[:, :, self.temporal - 1 :]  # latent frame 0 stands for frame 0 alone
        if clamp:
            video = video.clamp(-1.0, 1.0)
        # a copy: the caller may reuse z's memory for a later chunk (the decoder rank's buffers)
        previous = z[:, :, -1].clone()
        after = replace(state, previous=previous, latent_frames=state.latent_frames + z.shape[2])
        return video, after
