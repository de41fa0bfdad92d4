"""A micro preset that trains in seconds (64x64, a 2-layer DiT, a 4-channel VAE)."""

from __future__ import annotations

import dataclasses

from avatar_engine.config import AudioConfig, Preset, StreamConfig, VAEConfig
from tests.conftest import micro_dit

MICRO_TRAIN = Preset(
    name="micro-train",
    dit=dataclasses.replace(
        micro_dit(audio_feature_dim=16, max_characters=2),
        reference_every_frame=True,
        still_reference=True,
    ),
    stream=StreamConfig(height=64, width=64),
    audio=AudioConfig(encoder="mel", feature_dim=16, mel_channels=16),
    vae=VAEConfig(
        base_dim=2,
        dim_mult=(1, 2, 4, 8),
        num_res_blocks=1,
        decoder_res_blocks=1,
        latent_mean=(0.0,) * 16,
        latent_std=(1.0,) * 16,
    ),
)
