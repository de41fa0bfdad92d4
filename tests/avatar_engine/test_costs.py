"""Analytic FLOPs and cache bytes agree with what the model actually does."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from avatar_engine.cache import kv_cache_bytes
from avatar_engine.config import Preset, StreamConfig
from avatar_engine.costs import chunk_flops, parameter_counts
from avatar_engine.model import attention as attention_module
from avatar_engine.session import StreamSession
from tests.conftest import make_scene, micro_dit, random_features, random_model


def _matmul_attention(q, k, v, attn_mask=None):
    """SDPA as plain matmuls, which FlopCounterMode counts (it skips CPU SDPA kernels)."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("characters", [1, 2])
def test_chunk_flops_match_counted_flops(characters, monkeypatch):
    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", _matmul_attention)
    cfg = micro_dit(dim=64, num_heads=2, ffn_dim=256)
    stream = StreamConfig(height=96, width=64)
    session = StreamSession(
        random_model(cfg), stream, make_scene(cfg, stream, characters=characters)
    )
    features = random_features(cfg, 3, characters=characters)
    talk = torch.ones(1, characters, dtype=torch.bool)
    for _ in range(2):
        session.next_chunk(features, talk)
    with FlopCounterMode(display=False) as counter:
        session.next_chunk(features, talk)  # steady state: sink + previous + current keys
    counted = counter.get_total_flops()
    analytic = chunk_flops(cfg, stream, characters=characters)
    # The analytic count leaves out only the tiny timestep MLPs.
    assert analytic == pytest.approx(counted, rel=0.03)
    assert analytic <= counted


def test_kv_cache_bytes_match_the_allocation():
    cfg = micro_dit()
    stream = StreamConfig(height=64, width=96)
    session = StreamSession(random_model(cfg), stream, make_scene(cfg, stream))
    assert session.cache.nbytes == kv_cache_bytes(cfg, stream, itemsize=4)


def test_tiny_parameter_budget():
    """The embedded model has to ship in assets/ (60 MB in all, VAE included)."""
    from avatar_engine.weights import build_dit

    counts = parameter_counts(build_dit(Preset.from_name("tiny").dit))
    assert counts.total * 2 < 30e6  # fp16 bytes
