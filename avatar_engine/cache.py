"""Preallocated, fixed-shape K/V caches: one per (denoising step, layer)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatar_engine.config import DiTConfig, StreamConfig


@dataclass
class KVCache:
    """Keys and values of the sink chunk c0 and of the previous chunk, for one (step, layer).

    Keys are stored already rotated to their window slot (sink: slot 0, previous: slot 1), so
    reading them costs nothing and a chunk is rotated once, when it is written as "previous".
    """

    k: torch.Tensor  # [B, 2*Lc, H, D]: sink tokens [:Lc], previous-chunk tokens [Lc:]
    v: torch.Tensor  # [B, 2*Lc, H, D]
    tokens: int  # Lc, tokens per chunk

    @property
    def sink_k(self) -> torch.Tensor:
        return self.k[:, : self.tokens]  # [B, Lc, H, D]

    @property
    def sink_v(self) -> torch.Tensor:
        return self.v[:, : self.tokens]

    def write_sink(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Args: k, v: [B, Lc, H, D], k rotated to slot 0."""
        self.k[:, : self.tokens].copy_(k)
        self.v[:, : self.tokens].copy_(v)

    def write_previous(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Args: k, v: [B, Lc, H, D], k rotated to slot 1."""
        self.k[:, self.tokens :].copy_(k)
        self.v[:, self.tokens :].copy_(v)


def _cache_heads(cfg: DiTConfig, heads: int | None) -> int:
    if heads is None:
        return cfg.num_heads
    if not 1 <= heads <= cfg.num_heads:
        raise ValueError(f"a cache holds 1 to {cfg.num_heads} heads, not {heads}")
    return heads


class StreamCache:
    """All K/V caches of one stream, in a single allocation made at session start.

    `heads` sizes the caches for a subset of the attention heads (sequence parallelism: each
    rank attends with num_heads / P heads over the full sequence); None holds all of them.
    """

    def __init__(
        self,
        cfg: DiTConfig,
        stream: StreamConfig,
        *,
        batch: int,
        device: torch.device | str,
        dtype: torch.dtype,
        heads: int | None = None,
    ):
        tokens = stream.tokens_per_chunk
        shape = (
            stream.num_steps,
            cfg.num_layers,
            2,
            batch,
            2 * tokens,
            _cache_heads(cfg, heads),
            cfg.head_dim,
        )
        self.storage = torch.zeros(shape, device=device, dtype=dtype)  # [S, N, k|v, B, 2Lc, H, D]
        # Indexed views (not iteration, which unbinds) so they can be written in place in any
        # autograd mode.
        self.steps: list[list[KVCache]] = [
            [
                KVCache(k=self.storage[s, n, 0], v=self.storage[s, n, 1], tokens=tokens)
                for n in range(cfg.num_layers)
            ]
            for s in range(stream.num_steps)
        ]

    @property
    def nbytes(self) -> int:
        return self.storage.numel() * self.storage.element_size()


def kv_cache_bytes(
    cfg: DiTConfig,
    stream: StreamConfig,
    *,
    batch: int = 1,
    itemsize: int,
    heads: int | None = None,
) -> int:
    """Bytes a StreamCache (of `heads` heads; None = all) takes, without allocating it."""
    width = _cache_heads(cfg, heads) * cfg.head_dim
    elements = stream.num_steps * cfg.num_layers * 2 * batch * 2 * stream.tokens_per_chunk * width
    return elements * itemsize
