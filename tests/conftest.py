"""Small configs and random inputs shared by the tests."""

from __future__ import annotations

import pytest
import torch

from avatar_engine.config import DiTConfig, StreamConfig
from avatar_engine.model.audio import AudioConditioning
from avatar_engine.scene import SceneConditioning, face_mask_from_box
from avatar_engine.weights import random_dit


def micro_dit(**overrides) -> DiTConfig:
    """A DiT small enough to stream thousands of chunks in seconds."""
    fields = dict(
        dim=32,
        ffn_dim=64,
        num_heads=2,
        num_layers=2,
        text_dim=24,
        text_len=6,
        freq_dim=32,
        audio_feature_dim=12,
        audio_frame_dim=8,
        audio_hidden_dim=32,
        audio_tokens=3,
        audio_token_dim=16,
        audio_attn_dim=32,
        audio_heads=2,
        max_characters=3,
    )
    fields.update(overrides)
    return DiTConfig(**fields)


MICRO_STREAM = StreamConfig(height=64, width=64)  # latent 8x8, token grid 4x4


def random_model(cfg: DiTConfig, seed: int = 0):
    return random_dit(cfg, device="cpu", dtype=torch.float32, seed=seed)


def make_scene(
    cfg: DiTConfig, stream: StreamConfig, characters: int = 2, seed: int = 0
) -> SceneConditioning:
    gen = torch.Generator().manual_seed(seed)
    boxes = [(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0), (0.25, 0.25, 0.75, 0.75)]
    masks = torch.stack([face_mask_from_box(stream, boxes[k]) for k in range(characters)])
    return SceneConditioning(
        reference_latent=torch.randn(
            1, cfg.out_dim, stream.latent_h, stream.latent_w, generator=gen
        ),
        face_masks=masks[None],
        context=torch.randn(1, cfg.text_len, cfg.text_dim, generator=gen),
        blank_latent=torch.randn(1, cfg.out_dim, stream.latent_h, stream.latent_w, generator=gen),
    )


def random_features(
    cfg: DiTConfig, frames: int, characters: int = 2, seed: int = 0
) -> torch.Tensor:
    """[1, K, F, W, Da] speech features."""
    gen = torch.Generator().manual_seed(seed)
    shape = (1, characters, frames, cfg.audio_window_frames, cfg.audio_feature_dim)
    return torch.randn(shape, generator=gen)


def audio_for(
    scene: SceneConditioning, features: torch.Tensor, speaking: torch.Tensor
) -> AudioConditioning:
    return AudioConditioning(features=features, speaking=speaking, face_masks=scene.face_masks)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
