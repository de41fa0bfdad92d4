"""The one attention entry point: flash-attn on CUDA when installed, torch SDPA otherwise."""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "flash", "sdpa")
_HAS_FLASH = importlib.util.find_spec("flash_attn") is not None


def _use_flash(q: torch.Tensor, mask: torch.Tensor | None, backend: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; use one of {BACKENDS}")
    eligible = q.is_cuda and mask is None and q.dtype in (torch.float16, torch.bfloat16)
    if backend == "flash":
        if not (_HAS_FLASH and eligible):
            raise RuntimeError(
                "flash attention needs flash-attn installed (pip install '.[gpu]'), CUDA tensors "
                "in fp16/bf16 and no mask"
            )
        return True
    return backend == "auto" and _HAS_FLASH and eligible


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Scaled dot-product attention.

    Args:
        q: [B, Lq, H, D] queries.
        k: [B, Lk, H, D] keys.
        v: [B, Lk, H, D] values.
        mask: optional bool, broadcastable to [B, H, Lq, Lk]; True = may attend.
        backend: "auto", "flash" or "sdpa".

    Returns:
        [B, Lq, H, D]
    """
    if _use_flash(q, mask, backend):
        from flash_attn import flash_attn_func

        return flash_attn_func(q, k, v)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    )  # [B, H, Lq, D]
    return out.transpose(1, 2)
