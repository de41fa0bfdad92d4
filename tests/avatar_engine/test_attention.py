"""The attention entry point and RoPE."""

from __future__ import annotations

import pytest
import torch

from avatar_engine.model.attention import attention
from avatar_engine.model.rope import apply_rope, rope_table
from tests.conftest import micro_dit


def _reference(q, k, v, mask=None):
    scores = torch.einsum("blhd,bmhd->bhlm", q, k) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.einsum("bhlm,bmhd->blhd", scores.softmax(-1), v)


def test_sdpa_layout_and_mask():
    q, k, v = torch.randn(2, 5, 3, 8), torch.randn(2, 7, 3, 8), torch.randn(2, 7, 3, 8)
    assert torch.allclose(attention(q, k, v), _reference(q, k, v), atol=1e-6)
    mask = torch.rand(2, 1, 5, 7) > 0.3
    mask[..., 0] = True
    assert torch.allclose(attention(q, k, v, mask=mask), _reference(q, k, v, mask), atol=1e-6)


def test_flash_backend_is_refused_clearly_on_cpu():
    q = torch.randn(1, 4, 2, 8)
    with pytest.raises(RuntimeError, match="flash-attn"):
        attention(q, q, q, backend="flash")
    with pytest.raises(ValueError, match="unknown attention backend"):
        attention(q, q, q, backend="xformers")


def test_rope_depends_only_on_relative_position():
    cfg = micro_dit()
    q, k = torch.randn(1, 4, 2, cfg.head_dim), torch.randn(1, 4, 2, cfg.head_dim)

    def score(fq, fk):
        tq = rope_table(cfg, torch.tensor([fq]), 2, 2)
        tk = rope_table(cfg, torch.tensor([fk]), 2, 2)
        return torch.einsum("blhd,bmhd->bhlm", apply_rope(q, tq), apply_rope(k, tk))

    assert torch.allclose(score(6, 3), score(1003, 1000), atol=1e-4)
    assert not torch.allclose(score(6, 3), score(6, 0), atol=1e-3)
