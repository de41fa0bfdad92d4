"""Ulysses-style sequence parallelism for the streaming DiT.

P ranks of a process group share each chunk: every latent frame's token grid is split by rows,
so rank r holds rows [r·gh/P, (r+1)·gh/P) of every frame, [B, F·(gh/P)·gw, D] tokens. The time
modulation, the text and audio cross-attention and the FFN are per token and run on that slice
unchanged. Self-attention swaps the split with one all-to-all: each rank gets the whole
sequence for H/P heads, runs the ordinary StreamingWindow over caches that hold only those
heads, and a second all-to-all swaps back. The head's outputs are all-gathered, so every rank
returns the full prediction and the sampler runs identically everywhere.

Token order. After the all-to-all the sequence is rank-major, [P, F, gh/P, gw], not the
frame-major [F, gh, gw] that rope_table lays out. Attention without a mask is unchanged by a
permutation of its queries (the outputs follow them) and of its keys and values together, so
only the rotations must match their tokens: the slot tables are permuted once at start-up
(rank_major_tables) and the caches are written in the same order. Permuting the tokens instead
would cost a copy of q, k and v in every layer; with the tables permuted, the received buffer
is laid out so that q, k and v are views of it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from avatar_engine.cache import StreamCache
from avatar_engine.config import DiTConfig, StreamConfig
from avatar_engine.model.audio import AudioConditioning, AudioContext
from avatar_engine.model.block import ContextKV
from avatar_engine.model.dit import WanDiT
from avatar_engine.model.rope import RopeTable
from avatar_engine.model.window import SelfAttentionWindow, StreamingWindow
from avatar_engine.scene import SceneConditioning
from avatar_engine.session import StreamSession
from avatar_engine.vae.model import WanVAE

QKV = 3  # q, k and v travel in one all-to-all


def check_sequence_parallel(cfg: DiTConfig, stream: StreamConfig, world_size: int) -> None:
    """Raise a ValueError when a model and stream cannot be split over world_size ranks."""
    if world_size < 1:
        raise ValueError(f"sequence parallelism needs at least 1 rank, got {world_size}")
    if stream.grid_h % world_size:
        raise ValueError(
            f"the token grid has {stream.grid_h} rows, which do not split over {world_size} "
            f"ranks; choose a height whose grid rows (height / {stream.height // stream.grid_h})"
            " divide by the number of ranks"
        )
    if cfg.num_heads % world_size:
        raise ValueError(
            f"{cfg.num_heads} attention heads do not split over {world_size} ranks; use a "
            "number of ranks that divides the head count"
        )


def rank_major_tables(
    tables: tuple[RopeTable, ...], world_size: int, tokens_per_frame: int
) -> tuple[RopeTable, ...]:
    """Reorder RoPE tables from frame-major [F, gh, gw] to the gathered order [P, F, gh/P, gw].

    Args:
        tables: rotations of [F*gh*gw, 1, D/2] each (e.g. slot_tables()).
        tokens_per_frame: gh*gw.
    """
    out = []
    for table in tables:
        rotation = table.rotation.unflatten(0, (-1, world_size, tokens_per_frame // world_size))
        # rotation: [F, P, gh/P*gw, 1, D/2]
        out.append(RopeTable(rotation=rotation.transpose(0, 1).flatten(0, 2).contiguous()))
    return tuple(out)


class UlyssesWindow:
    """A self-attention window run over the full sequence with this rank's heads.

    The inner window sees [B, L, H/P, D] with tokens in rank-major order, so its RoPE tables
    must come from rank_major_tables and its caches must hold H/P heads.
    """

    def __init__(self, inner: SelfAttentionWindow, group: dist.ProcessGroup | None = None):
        self.inner = inner
        self.group = group
        self.world_size = dist.get_world_size(group)

    def __call__(self, layer, q, k, v):
        """Args: q, k, v: [B, L/P, H, D], this rank's tokens. Returns [B, L/P, H, D]."""
        ranks = self.world_size
        batch, tokens, heads, head_dim = q.shape
        send = q.new_empty(ranks, tokens, QKV, batch, heads // ranks, head_dim)
        # send: [P, L/P, 3, B, H/P, D]; send[j] holds this rank's tokens of head group j. This
        # layout makes the received q, k and v views of one buffer over [P*L/P] tokens.
        for i, t in enumerate((q, k, v)):
            send[:, :, i].copy_(t.unflatten(2, (ranks, -1)).permute(2, 1, 0, 3, 4))
            # [B, L/P, P, H/P, D] -> [P, L/P, B, H/P, D]
        recv = torch.empty_like(send)  # recv[j]: rank j's tokens of this rank's head group
        dist.all_to_all_single(recv, send, group=self.group)
        gathered = recv.flatten(0, 1).permute(1, 2, 0, 3, 4)  # [3, B, L, H/P, D], rank-major
        out = self.inner(layer, *gathered.unbind(0))  # [B, L, H/P, D]

        send = out.unflatten(1, (ranks, tokens)).transpose(0, 1).contiguous()
        # send: [P, B, L/P, H/P, D]; send[j] holds rank j's tokens
        recv = torch.empty_like(send)  # recv[j]: this rank's tokens of head group j
        dist.all_to_all_single(recv, send, group=self.group)
        return recv.permute(1, 2, 0, 3, 4).flatten(2, 3)  # [B, L/P, H, D]


class SequenceParallelDiT:
    """The streaming forward of a WanDiT split over the ranks of a process group.

    It has WanDiT's streaming interface (cfg, context_kv, audio_context, forward_chunk), so a
    StreamSession can drive it; every rank must call it with the same inputs.
    """

    def __init__(self, model: WanDiT, stream: StreamConfig, group: dist.ProcessGroup | None = None):
        self.world_size, self.rank = dist.get_world_size(group), dist.get_rank(group)
        check_sequence_parallel(model.cfg, stream, self.world_size)
        self.model, self.cfg, self.stream, self.group = model, model.cfg, stream, group
        self.heads = model.cfg.num_heads // self.world_size
        rows = stream.latent_h // self.world_size  # latent pixel rows of each rank
        self.rows = slice(self.rank * rows, (self.rank + 1) * rows)

    # ---- what a session builds at start-up ------------------------------------------------

    def context_kv(self, context, image_tokens=None) -> list[ContextKV]:
        return self.model.context_kv(context, image_tokens)

    def slot_tables(self, tables: tuple[RopeTable, ...]) -> tuple[RopeTable, ...]:
        """The window slots' tables (from slot_tables()) in the gathered token order."""
        return rank_major_tables(tables, self.world_size, self.stream.tokens_per_latent_frame)

    def stream_cache(self, *, batch: int, device, dtype: torch.dtype) -> StreamCache:
        """The K/V caches of this rank's H/P heads."""
        return StreamCache(
            self.cfg, self.stream, batch=batch, device=device, dtype=dtype, heads=self.heads
        )

    # ---- per chunk --------------------------------------------------------------------------

    def audio_context(self, audio: AudioConditioning) -> AudioContext:
        """WanDiT.audio_context with the face masks of this rank's tokens only ([B, K, G/P])."""
        full = self.model.audio_context(audio)
        masks = full.face_masks.unflatten(2, (self.world_size, -1))[:, :, self.rank]
        return AudioContext(tokens=full.tokens, face_masks=masks)  # masks: [B, K, G/P]

    def forward_chunk(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        timestep: torch.Tensor,
        *,
        context_kv: list[ContextKV],
        audio: AudioContext | None,
        window: StreamingWindow,
    ) -> torch.Tensor:
        """WanDiT.forward_chunk computed by all ranks together.

        Args:
            x: [B, out_dim, Fc, h, w] noisy latents of the whole chunk (the same on every rank).
            cond: [B, cond_dim, Fc, h, w].
            timestep: [B] or [B, Fc] in Wan units.
            context_kv: from context_kv().
            audio: from this object's audio_context() (face masks of this rank's tokens).
            window: the chunk's role with slot_tables() and stream_cache() of this rank.

        Returns:
            [B, out_dim, Fc, h, w] predicted flow, the whole chunk, on every rank.
        """
        model, stream = self.model, self.stream
        if x.shape[-2:] != (stream.latent_h, stream.latent_w):
            raise ValueError(
                f"latents of {tuple(x.shape[-2:])} pixels; this parallel model was built for "
                f"{(stream.latent_h, stream.latent_w)}"
            )
        tokens, grid = model.embed_tokens(x[..., self.rows, :], cond[..., self.rows, :])
        # tokens: [B, F*(gh/P)*gw, D], this rank's rows of every frame (patch kernel = stride)
        if audio is not None and audio.face_masks.shape[-1] != grid[1] * grid[2]:
            raise ValueError(
                f"face masks cover {audio.face_masks.shape[-1]} tokens per frame, this rank "
                f"holds {grid[1] * grid[2]}; build the audio context with this object's "
                "audio_context()"
            )
        e, temb = model.time_modulation(timestep, grid[0])
        tokens = model.run_blocks(tokens, e, context_kv, audio, UlyssesWindow(window, self.group))
        local = model.unpatchify(model.head(tokens, temb), grid)  # [B, C, Fc, h/P, w]
        return self._gather_rows(local.contiguous())

    def _gather_rows(self, local: torch.Tensor) -> torch.Tensor:
        """Args: local: [B, C, F, h/P, w] this rank's rows. Returns [B, C, F, h, w]."""
        batch = local.shape[0]
        gathered = local.new_empty(self.world_size * batch, *local.shape[1:])  # [P*B, C, F, h/P, w]
        dist.all_gather_single(gathered, local, group=self.group)
        gathered = gathered.unflatten(0, (self.world_size, batch))  # [P, B, C, F, h/P, w]
        return gathered.permute(1, 2, 3, 0, 4, 5).flatten(3, 4)  # [B, C, F, h, w]


class SequenceParallelSession(StreamSession):
    """A StreamSession whose DiT runs split over the ranks of a process group.

    Every rank constructs it with the same model weights, scene and seed, and calls next_chunk
    with the same features; every rank returns the same chunks as a single-process
    StreamSession.
    """

    def __init__(
        self,
        model: WanDiT,
        stream: StreamConfig,
        scene: SceneConditioning,
        *,
        group: dist.ProcessGroup | None = None,
        seed: int = 0,
        vae: WanVAE | None = None,
    ):
        self.parallel = SequenceParallelDiT(model, stream, group)  # validates before allocating
        super().__init__(model, stream, scene, seed=seed, vae=vae)
        self.dit = self.parallel

    def window_slots(self, tables: tuple[RopeTable, ...]) -> tuple[RopeTable, ...]:
        return self.parallel.slot_tables(tables)

    def new_cache(self, *, batch: int, device: torch.device, dtype: torch.dtype) -> StreamCache:
        return self.parallel.stream_cache(batch=batch, device=device, dtype=dtype)
