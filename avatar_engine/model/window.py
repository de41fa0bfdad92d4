"""How self-attention sees other chunks: the bidirectional teacher, the sparse-causal student
over a whole clip, and the streaming student with its per-step caches.

Positions are window-relative for the student: the sink chunk c0 always sits in slot 0, the
previous chunk in slot 1 and the current chunk in slot 2, so chunk 100,000 computes exactly
what chunk 2 computes given the same cache contents. Chunk 0 attends only to itself (in slot 0,
where its keys stay as the sink); chunk 1 attends to the sink and itself.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from typing import Protocol

import torch

from avatar_engine.cache import KVCache
from avatar_engine.config import DiTConfig
from avatar_engine.model.attention import attention
from avatar_engine.model.rope import RopeTable, apply_rope, rope_table

SINK_SLOT, PREVIOUS_SLOT, CURRENT_SLOT = 0, 1, 2


class ClipWindow(Enum):
    """What a whole clip's self-attention sees (WanDiT.forward_clip)."""

    BIDIRECTIONAL = "bidirectional"  # every frame, at absolute positions (the teacher)
    SPARSE_CAUSAL = "sparse_causal"  # each chunk: the first, the previous and itself (student)


class ChunkRole(IntEnum):
    """Which keys a chunk sees, by its place in the stream."""

    SINK = 0  # chunk 0: itself, in slot 0; its K/V become the sink
    FIRST = 1  # chunk 1: sink + itself
    STEADY = 2  # chunk t >= 2: sink + previous + itself

    @classmethod
    def of(cls, index: int) -> ChunkRole:
        return cls(min(index, cls.STEADY))


class SelfAttentionWindow(Protocol):
    def __call__(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        """Args: q, k, v: [B, L, H, D] after qk-norm, not yet rotated. Returns [B, L, H, D]."""
        ...


def slot_tables(
    cfg: DiTConfig, chunk_frames: int, grid_h: int, grid_w: int, device: torch.device
) -> tuple[RopeTable, RopeTable, RopeTable]:
    """RoPE tables of the three window slots, each over one chunk's tokens."""
    return tuple(  # type: ignore[return-value]
        rope_table(
            cfg,
            torch.arange(slot * chunk_frames, (slot + 1) * chunk_frames, device=device),
            grid_h,
            grid_w,
        )
        for slot in (SINK_SLOT, PREVIOUS_SLOT, CURRENT_SLOT)
    )


class BidirectionalWindow:
    """Every token attends to every token; frames at absolute positions 0..F-1 (the teacher)."""

    def __init__(self, cfg: DiTConfig, frames: int, grid_h: int, grid_w: int, device):
        positions = torch.arange(frames, device=device)
        self.table = rope_table(cfg, positions, grid_h, grid_w)

    def __call__(self, layer, q, k, v):
        return attention(apply_rope(q, self.table), apply_rope(k, self.table), v)


class SparseCausalWindow:
    """The student over a whole clip: chunk i attends to c0, c(i-1) and itself, in window slots.

    Each chunk's keys are gathered as [sink | previous | current] and a key mask removes what
    chunk 0 and chunk 1 do not see, so the result equals streaming chunk by chunk.
    """

    def __init__(
        self, cfg: DiTConfig, chunks: int, chunk_frames: int, grid_h: int, grid_w: int, device
    ):
        self.chunks = chunks
        self.slots = slot_tables(cfg, chunk_frames, grid_h, grid_w, device)
        tokens = chunk_frames * grid_h * grid_w
        seen = torch.ones(chunks, 3, dtype=torch.bool, device=device)  # [n, sink|prev|cur]
        seen[0, 1:] = False  # chunk 0's own keys sit in the sink slot
        if chunks > 1:
            seen[1, PREVIOUS_SLOT] = False
        self.key_mask = seen.repeat_interleave(tokens, dim=1)[:, None, None]  # [n, 1, 1, 3Lc]

    def __call__(self, layer, q, k, v):
        batch, n = q.shape[0], self.chunks
        sink, previous, current = self.slots
        q, k, v = (t.unflatten(1, (n, -1)) for t in (q, k, v))  # [B, n, Lc, H, D]
        q_rot = apply_rope(q.flatten(0, 1), current).unflatten(0, (batch, n))
        q_rot[:, 0] = apply_rope(q[:, 0], sink)
        k_sink = apply_rope(k[:, 0], sink)[:, None].expand_as(k)
        k_prev = apply_rope(k.roll(1, dims=1).flatten(0, 1), previous).unflatten(0, (batch, n))
        k_cur = apply_rope(k.flatten(0, 1), current).unflatten(0, (batch, n))
        keys = torch.cat([k_sink, k_prev, k_cur], dim=2)  # [B, n, 3Lc, H, D]
        values = torch.cat([v[:, :1].expand_as(v), v.roll(1, dims=1), v], dim=2)
        out = attention(
            q_rot.flatten(0, 1),
            keys.flatten(0, 1),
            values.flatten(0, 1),
            mask=self.key_mask.repeat(batch, 1, 1, 1),
        )  # [B*n, Lc, H, D]
        return out.unflatten(0, (batch, n)).flatten(1, 2)


class StreamingWindow:
    """The student on one chunk, reading and advancing the caches of one denoising step."""

    def __init__(
        self, role: ChunkRole, slots: tuple[RopeTable, RopeTable, RopeTable], caches: list[KVCache]
    ):
        self.role = role
        self.slots = slots
        self.caches = caches

    def __call__(self, layer, q, k, v):
        cache = self.caches[layer]
        sink, previous, current = self.slots
        if self.role is ChunkRole.SINK:
            q, k = apply_rope(q, sink), apply_rope(k, sink)
            cache.write_sink(k, v)
            return attention(q, k, v)
        k_cur = apply_rope(k, current)
        if self.role is ChunkRole.FIRST:
            keys = torch.cat([cache.sink_k, k_cur], dim=1)  # [B, 2Lc, H, D]
            values = torch.cat([cache.sink_v, v], dim=1)
        else:
            keys = torch.cat([cache.k, k_cur], dim=1)  # [B, 3Lc, H, D]
            values = torch.cat([cache.v, v], dim=1)
        out = attention(apply_rope(q, current), keys, values)
        cache.write_previous(apply_rope(k, previous), v)
        return out
