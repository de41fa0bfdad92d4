"""One DiT block: modulated self-attention, text (+image) cross-attention, audio
cross-attention, modulated FFN."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avatar_engine.config import DiTConfig
from avatar_engine.model.attention import attention
from avatar_engine.model.audio import AudioContext, AudioCrossAttention
from avatar_engine.model.layers import (
    FP32LayerNorm,
    RMSNorm,
    feed_forward,
    gated_residual,
    modulate,
)
from avatar_engine.model.window import SelfAttentionWindow


@dataclass(frozen=True)
class ContextKV:
    """Cross-attention keys and values of a session's constant context, for one block."""

    k: torch.Tensor  # [B, Lt, H, D] text keys (normed)
    v: torch.Tensor  # [B, Lt, H, D]
    k_img: torch.Tensor | None  # [B, Li, H, D] CLIP image keys (normed), if the model has them
    v_img: torch.Tensor | None


class _QKVO(nn.Module):
    """q/k/v/o projections with RMS qk-norm over the full width (Wan's attention weights)."""

    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)


class SelfAttention(_QKVO):
    def forward(self, x: torch.Tensor, layer: int, window: SelfAttentionWindow) -> torch.Tensor:
        """Args:
            x: [B, L, D]; window: which keys each query sees (and the caches, when streaming).

        Returns:
            [B, L, D]
        """
        q = self.norm_q(self.q(x)).unflatten(-1, (self.heads, -1))  # [B, L, H, Dh]
        k = self.norm_k(self.k(x)).unflatten(-1, (self.heads, -1))
        v = self.v(x).unflatten(-1, (self.heads, -1))
        return self.o(window(layer, q, k, v).flatten(2))


class CrossAttention(_QKVO):
    """Attention to text tokens, plus (I2V) a second attention to CLIP image tokens."""

    def __init__(self, dim: int, heads: int, eps: float, image: bool):
        super().__init__(dim, heads, eps)
        if image:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps)

    def context_kv(self, text: torch.Tensor, image: torch.Tensor | None) -> ContextKV:
        """Args: text: [B, Lt, D] embedded text; image: [B, Li, D] embedded image tokens."""
        k = self.norm_k(self.k(text)).unflatten(-1, (self.heads, -1))  # [B, Lt, H, Dh]
        v = self.v(text).unflatten(-1, (self.heads, -1))
        if image is None:
            return ContextKV(k=k, v=v, k_img=None, v_img=None)
        k_img = self.norm_k_img(self.k_img(image)).unflatten(-1, (self.heads, -1))
        v_img = self.v_img(image).unflatten(-1, (self.heads, -1))  # [B, Li, H, Dh]
        return ContextKV(k=k, v=v, k_img=k_img, v_img=v_img)

    def forward(self, x: torch.Tensor, ctx: ContextKV) -> torch.Tensor:
        """Args: x: [B, L, D]. Returns [B, L, D]."""
        q = self.norm_q(self.q(x)).unflatten(-1, (self.heads, -1))  # [B, L, H, Dh]
        out = attention(q, ctx.k, ctx.v)
        if ctx.k_img is not None:
            out = out + attention(q, ctx.k_img, ctx.v_img)
        return self.o(out.flatten(2))


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim, eps = cfg.dim, cfg.eps
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, cfg.num_heads, eps)
        self.norm3 = FP32LayerNorm(dim, eps)
        self.cross_attn = CrossAttention(dim, cfg.num_heads, eps, image=cfg.image_dim is not None)
        self.audio_attn = AudioCrossAttention(cfg)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = feed_forward(dim, cfg.ffn_dim)
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        ctx: ContextKV,
        audio: AudioContext | None,
        layer: int,
        window: SelfAttentionWindow,
    ) -> torch.Tensor:
        """Args:
            x: [B, F*G, D] tokens.
            e: [B, F, 6, D] fp32 time projection per latent frame.
            ctx: this block's text/image keys and values.
            audio: audio tokens and face masks; None runs the plain Wan trunk.
            layer: this block's index (selects its caches).
            window: the self-attention pattern.

        Returns:
            [B, F*G, D]
        """
        mod = (self.modulation.float()[:, None] + e)[:, :, :, None]  # [B, F, 6, 1, D]
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = mod.unbind(2)
        y = modulate(self.norm1(x.float()), shift_sa, scale_sa).type_as(x)
        x = gated_residual(x, self.self_attn(y, layer, window), gate_sa)
        x = x + self.cross_attn(self.norm3(x.float()).type_as(x), ctx)
        if audio is not None:
            x = x + self.audio_attn(x, audio)
        y = modulate(self.norm2(x.float()), shift_ff, scale_ff).type_as(x)
        return gated_residual(x, self.ffn(y), gate_ff)
