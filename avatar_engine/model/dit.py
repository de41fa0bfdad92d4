"""The Wan-style image-to-video DiT with audio conditioning: one model, two forwards."""

from __future__ import annotations

import math

import torch
from torch import nn

from avatar_engine.config import DiTConfig
from avatar_engine.model.audio import (
    AudioConditioning,
    AudioContext,
    AudioProjection,
    CharacterAudio,
)
from avatar_engine.model.block import Block, ContextKV
from avatar_engine.model.layers import (
    FP32LayerNorm,
    Head,
    ImageEmbedding,
    RMSNorm,
    sinusoidal_embedding,
)
from avatar_engine.model.window import (
    BidirectionalWindow,
    ClipWindow,
    SelfAttentionWindow,
    SparseCausalWindow,
    StreamingWindow,
)

# Name fragments of the audio modules (see names_match); a plain Wan checkpoint has none.
AUDIO_MODULES = (".audio_proj.", ".characters.", ".audio_attn.")
FP32_PARAMETERS = ("time_embedding.", "time_projection.")


def names_match(name: str, fragments: tuple[str, ...]) -> bool:
    """Whether a parameter name contains any of the fragments (".x." matches a leading "x.")."""
    return any(f in "." + name for f in fragments)


class WanDiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(
            nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        if cfg.image_dim is not None:
            self.img_emb = ImageEmbedding(cfg.image_dim, dim)
        self.audio_proj = AudioProjection(cfg)
        self.characters = CharacterAudio(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(dim, cfg.out_dim, cfg.patch_size, cfg.eps)

    # ---- conditioning that is constant for a session -------------------------------------

    def context_kv(
        self, context: torch.Tensor, image_tokens: torch.Tensor | None = None
    ) -> list[ContextKV]:
        """Every block's cross-attention keys/values for a text (and image) context.

        Args:
            context: [B, Lt, text_dim] text encoder tokens.
            image_tokens: [B, Li, image_dim] CLIP tokens; required iff the config has image_dim.
        """
        has_image = self.cfg.image_dim is not None
        if has_image != (image_tokens is not None):
            need = "needs" if has_image else "takes no"
            raise ValueError(
                f"this model {need} CLIP image tokens (image_dim={self.cfg.image_dim})"
            )
        dtype = self.patch_embedding.weight.dtype
        text = self.text_embedding(context.to(dtype))  # [B, Lt, D]
        image = self.img_emb(image_tokens.to(dtype)) if has_image else None  # [B, Li, D]
        return [block.cross_attn.context_kv(text, image) for block in self.blocks]

    def audio_context(self, audio: AudioConditioning) -> AudioContext:
        """Project speech features to audio tokens and apply speaking/silence per character."""
        dtype = self.patch_embedding.weight.dtype
        tokens = self.characters(self.audio_proj(audio.features.to(dtype)), audio.speaking)
        return AudioContext(tokens=tokens, face_masks=audio.face_masks.flatten(2).to(dtype))

    # ---- the two forwards ----------------------------------------------------------------

    def forward_clip(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        timestep: torch.Tensor,
        *,
        context: torch.Tensor,
        image_tokens: torch.Tensor | None = None,
        audio: AudioConditioning | None = None,
        window: ClipWindow = ClipWindow.BIDIRECTIONAL,
        chunk_frames: int = 3,
    ) -> torch.Tensor:
        """A whole clip at once (training, the teacher, and the reference for streaming).

        Args:
            x: [B, out_dim, F, h, w] noisy latents.
            cond: [B, cond_dim, F, h, w] mask + reference latent channels.
            timestep: [B] or [B, F] in Wan units (0 = clean, 1000 = noise).
            context, image_tokens: see context_kv.
            audio: speech conditioning for the F latent frames; None skips the audio modules.
            window: BIDIRECTIONAL (absolute positions) or SPARSE_CAUSAL (chunks of
                chunk_frames attend to c0, c(t-1) and themselves, in window slots).

        Returns:
            [B, out_dim, F, h, w] predicted flow.
        """
        frames, h, w = x.shape[2:]
        grid_h, grid_w = h // self.cfg.patch_size[1], w // self.cfg.patch_size[2]
        pattern: SelfAttentionWindow
        if window is ClipWindow.BIDIRECTIONAL:
            pattern = BidirectionalWindow(self.cfg, frames, grid_h, grid_w, x.device)
        else:
            if frames % chunk_frames:
                raise ValueError(
                    f"{frames} latent frames do not split into chunks of {chunk_frames}"
                )
            pattern = SparseCausalWindow(
                self.cfg, frames // chunk_frames, chunk_frames, grid_h, grid_w, x.device
            )
        ctx = self.context_kv(context, image_tokens)
        audio_ctx = None if audio is None else self.audio_context(audio)
        return self._forward(x, cond, timestep, ctx, audio_ctx, pattern)

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
        """One chunk of a stream, reading and advancing one denoising step's K/V caches.

        Args:
            x: [B, out_dim, Fc, h, w] noisy latents of the chunk.
            cond: [B, cond_dim, Fc, h, w].
            timestep: [B] or [B, Fc] in Wan units.
            context_kv: from context_kv(), computed once per session.
            audio: from audio_context() for this chunk's Fc latent frames.
            window: the chunk's role, slot RoPE tables and this step's caches.

        Returns:
            [B, out_dim, Fc, h, w] predicted flow.
        """
        return self._forward(x, cond, timestep, context_kv, audio, window)

    def _forward(self, x, cond, timestep, ctx, audio, window: SelfAttentionWindow):
        x, grid = self.embed_tokens(x, cond)
        e, temb = self.time_modulation(timestep, grid[0])
        x = self.run_blocks(x, e, ctx, audio, window)
        return self.unpatchify(self.head(x, temb), grid)

    # ---- the forward's stages (shared with the sequence-parallel runtime) -----------------

    def embed_tokens(
        self, x: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Patch-embed latents and conditioning into tokens.

        Args:
            x: [B, out_dim, F, h, w] noisy latents.
            cond: [B, cond_dim, F, h, w].

        Returns:
            [B, F'*gh*gw, D] tokens laid out frame-major, then row, then column, and the token
            grid (F', gh, gw) (F' = F / temporal patch).
        """
        dtype = self.patch_embedding.weight.dtype
        x = self.patch_embedding(torch.cat([x, cond], dim=1).to(dtype))  # [B, D, F', gh, gw]
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2), grid  # [B, F'*gh*gw, D]

    def time_modulation(
        self, timestep: torch.Tensor, frames: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-latent-frame time embedding and the blocks' modulation.

        Args:
            timestep: [B] or [B, F'] in Wan units.
            frames: F', latent frames of tokens.

        Returns:
            e: [B, F', 6, D] fp32 for the blocks; temb: [B, F', D] fp32 for the head.
        """
        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(-1, frames)  # [B, F']
        time_dtype = self.time_embedding[0].weight.dtype
        temb = self.time_embedding(
            sinusoidal_embedding(timestep, self.cfg.freq_dim).to(time_dtype)
        )  # [B, F', D]
        e = self.time_projection(temb).float().unflatten(-1, (6, -1))  # [B, F', 6, D]
        return e, temb.float()

    def run_blocks(
        self,
        x: torch.Tensor,
        e: torch.Tensor,
        ctx: list[ContextKV],
        audio: AudioContext | None,
        window: SelfAttentionWindow,
    ) -> torch.Tensor:
        """Args: x: [B, F'*G, D] tokens; e: [B, F', 6, D]; see Block. Returns [B, F'*G, D]."""
        for layer, block in enumerate(self.blocks):
            x = block(x, e, ctx[layer], audio, layer, window)
        return x

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Head outputs back to latent pixels.

        Args:
            x: [B, F'*gh*gw, out_dim * prod(patch)] in the token order of embed_tokens.
            grid: (F', gh, gw).

        Returns:
            [B, out_dim, F'*pt, gh*ph, gw*pw]
        """
        cfg = self.cfg
        frames, grid_h, grid_w = grid
        pt, ph, pw = cfg.patch_size
        x = x.view(x.shape[0], frames, grid_h, grid_w, pt, ph, pw, cfg.out_dim)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # [B, C, F', pt, gh, ph, gw, pw]
        return x.reshape(x.shape[0], cfg.out_dim, frames * pt, grid_h * ph, grid_w * pw)

    # ---- initialisation ------------------------------------------------------------------

    @torch.no_grad()
    def init_module(self, module: nn.Module) -> None:
        """(Re)initialise the parameters a module owns directly (not its children's)."""
        if isinstance(module, nn.Linear | nn.Conv3d):
            nn.init.xavier_uniform_(module.weight.flatten(1))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, FP32LayerNorm | RMSNorm) and module.weight is not None:
            nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, Block | Head):
            nn.init.normal_(module.modulation, std=1 / math.sqrt(self.cfg.dim))
        elif isinstance(module, CharacterAudio):
            nn.init.normal_(module.speaking, std=0.02)
            nn.init.normal_(module.silence, std=0.02)

    def init_weights(self) -> WanDiT:
        for module in self.modules():
            self.init_module(module)
        return self

    def to_compute_dtype(self, dtype: torch.dtype) -> WanDiT:
        """Cast to dtype, keeping the time embedding and modulation in fp32 (as Wan does)."""
        self.to(dtype)
        for name, param in self.named_parameters():
            if name.startswith(FP32_PARAMETERS) or name.endswith("modulation"):
                param.data = param.data.float()
        return self
