"""Parameter counts (from a meta-built model) and analytic FLOPs per chunk."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from avatar_engine.cache import kv_cache_bytes
from avatar_engine.config import DiTConfig, Preset, StreamConfig
from avatar_engine.model.dit import AUDIO_MODULES, WanDiT, names_match

IMAGE_MODULES = (".img_emb.", ".k_img.", ".v_img.", ".norm_k_img.")


@dataclass(frozen=True)
class ParameterCounts:
    trunk: int  # the Wan I2V trunk, image branch included
    image: int  # of which the CLIP image branch (img_emb + k_img/v_img)
    audio: int  # audio projection, speaking/silence embeddings, audio cross-attention

    @property
    def total(self) -> int:
        return self.trunk + self.audio


def parameter_counts(model: WanDiT) -> ParameterCounts:
    trunk = image = audio = 0
    for name, param in model.named_parameters():
        if names_match(name, AUDIO_MODULES):
            audio += param.numel()
            continue
        trunk += param.numel()
        if names_match(name, IMAGE_MODULES):
            image += param.numel()
    return ParameterCounts(trunk=trunk, image=image, audio=audio)


def chunk_flops(cfg: DiTConfig, stream: StreamConfig, *, characters: int = 1) -> int:
    """Multiply-adds x2 of one steady-state chunk (all denoising steps), matmuls only.

    The text/image cross-attention keys and values are computed once per session and are not
    counted; the chunk attends to 3 chunks of keys (sink, previous, itself).
    """
    dim, tokens = cfg.dim, stream.tokens_per_chunk
    frames = stream.chunk_latent_frames
    keys = 3 * tokens
    context = cfg.text_len + (cfg.image_len if cfg.image_dim is not None else 0)
    audio_tokens = characters * frames * cfg.audio_tokens
    per_layer = (
        2 * tokens * 4 * dim * dim  # self-attention q, k, v, o
        + 4 * tokens * keys * dim  # self-attention scores and values
        + 2 * tokens * 2 * dim * dim  # cross-attention q, o
        + 4 * tokens * context * dim  # cross-attention scores and values
        + 2 * tokens * 2 * dim * cfg.ffn_dim  # FFN
        + 2 * tokens * 2 * dim * cfg.audio_attn_dim  # audio q, o
        + 2 * audio_tokens * 2 * cfg.audio_token_dim * cfg.audio_attn_dim  # audio k, v
        + 4 * characters * tokens * cfg.audio_tokens * cfg.audio_attn_dim  # audio attention
    )
    patch = math.prod(cfg.patch_size)
    embed_and_head = 2 * tokens * dim * patch * (cfg.in_dim + cfg.out_dim)
    per_step = cfg.num_layers * per_layer + embed_and_head
    projection = (
        characters
        * frames
        * 2
        * (
            cfg.audio_window_frames * cfg.audio_feature_dim * cfg.audio_frame_dim
            + cfg.audio_window_frames * cfg.audio_frame_dim * cfg.audio_hidden_dim
            + cfg.audio_hidden_dim * cfg.audio_hidden_dim
            + cfg.audio_hidden_dim * cfg.audio_tokens * cfg.audio_token_dim
        )
    )
    return stream.num_steps * per_step + projection


@dataclass(frozen=True)
class PresetSummary:
    name: str
    params: ParameterCounts
    resolution: tuple[int, int]
    tokens_per_chunk: int
    kv_cache_bytes: int
    chunk_flops: int
    chunk_duration_s: float


def summarize(preset: Preset, *, dtype: torch.dtype) -> PresetSummary:
    """Everything `avatar info` prints; builds the model on the meta device only."""
    with torch.device("meta"):
        model = WanDiT(preset.dit)
    stream = preset.stream
    return PresetSummary(
        name=preset.name,
        params=parameter_counts(model),
        resolution=(stream.height, stream.width),
        tokens_per_chunk=stream.tokens_per_chunk,
        kv_cache_bytes=kv_cache_bytes(preset.dit, stream, itemsize=dtype.itemsize),
        chunk_flops=chunk_flops(preset.dit, stream),
        chunk_duration_s=stream.chunk_duration_s,
    )
