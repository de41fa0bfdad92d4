"""Audio conditioning: the window projection, per-character speaking/silence embeddings, and the
per-block audio cross-attention routed by face region."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avatar_engine.config import DiTConfig
from avatar_engine.model.attention import attention
from avatar_engine.model.layers import FP32LayerNorm, RMSNorm


@dataclass(frozen=True)
class AudioConditioning:
    """What the caller gives the DiT about speech, per latent frame and character."""

    features: torch.Tensor  # [B, K, F, W, Da] speech features of each latent frame's ±window
    speaking: torch.Tensor  # [B, K, F] bool; False = listening (silence embedding)
    face_masks: torch.Tensor  # [B, K, gh, gw] 1 inside character k's face region, else 0


@dataclass(frozen=True)
class AudioContext:
    """Audio tokens ready for every block's audio cross-attention."""

    tokens: torch.Tensor  # [B, K, F, Na, Dc]
    face_masks: torch.Tensor  # [B, K, G] G = gh*gw tokens per latent frame


class AudioProjection(nn.Module):
    """Each latent frame's window of per-video-frame features -> its audio context tokens."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.frame_proj = nn.Linear(cfg.audio_feature_dim, cfg.audio_frame_dim)
        self.mix = nn.Sequential(
            nn.Linear(cfg.audio_window_frames * cfg.audio_frame_dim, cfg.audio_hidden_dim),
            nn.SiLU(),
            nn.Linear(cfg.audio_hidden_dim, cfg.audio_hidden_dim),
            nn.SiLU(),
            nn.Linear(cfg.audio_hidden_dim, cfg.audio_tokens * cfg.audio_token_dim),
        )
        self.norm = FP32LayerNorm(cfg.audio_token_dim, cfg.eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args:
            features: [B, K, F, W, Da]

        Returns:
            [B, K, F, Na, Dc]
        """
        window = self.frame_proj(features).flatten(-2)  # [B, K, F, W*Pf]
        tokens = self.mix(window).unflatten(-1, (self.cfg.audio_tokens, -1))  # [B, K, F, Na, Dc]
        return self.norm(tokens)


class CharacterAudio(nn.Module):
    """Per-character speaking and silence embeddings.

    A speaking character's tokens get its speaking embedding added; a listening character's
    tokens are replaced by its silence embedding, so its audio features cannot leak through.
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        shape = (cfg.max_characters, cfg.audio_tokens, cfg.audio_token_dim)
        self.speaking = nn.Parameter(torch.zeros(shape))
        self.silence = nn.Parameter(torch.zeros(shape))

    def forward(self, tokens: torch.Tensor, speaking: torch.Tensor) -> torch.Tensor:
        """Args:
            tokens: [B, K, F, Na, Dc]
            speaking: [B, K, F] bool

        Returns:
            [B, K, F, Na, Dc]
        """
        characters = tokens.shape[1]
        if characters > self.speaking.shape[0]:
            raise ValueError(
                f"{characters} characters given; this model supports at most "
                f"{self.speaking.shape[0]}"
            )
        talk = (tokens + self.speaking[:characters, None]).to(tokens.dtype)
        listen = self.silence[:characters, None].to(tokens.dtype)  # [K, 1, Na, Dc]
        return torch.where(speaking[..., None, None], talk, listen)


class AudioCrossAttention(nn.Module):
    """Query tokens of latent frame f attend to frame f's audio tokens of each character; a
    character's contribution is kept only inside its face region."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads = cfg.audio_heads
        self.norm = FP32LayerNorm(cfg.dim, cfg.eps)
        self.q = nn.Linear(cfg.dim, cfg.audio_attn_dim)
        self.k = nn.Linear(cfg.audio_token_dim, cfg.audio_attn_dim)
        self.v = nn.Linear(cfg.audio_token_dim, cfg.audio_attn_dim)
        self.o = nn.Linear(cfg.audio_attn_dim, cfg.dim)
        self.norm_q = RMSNorm(cfg.audio_attn_dim, cfg.eps)
        self.norm_k = RMSNorm(cfg.audio_attn_dim, cfg.eps)

    def forward(self, x: torch.Tensor, audio: AudioContext) -> torch.Tensor:
        """Args:
            x: [B, F*G, D] tokens.
            audio: tokens [B, K, F, Na, Dc] and face masks [B, K, G].

        Returns:
            [B, F*G, D]
        """
        batch, characters, frames = audio.tokens.shape[:3]
        q = self.norm_q(self.q(self.norm(x)))  # [B, F*G, Ia]
        q = q.unflatten(1, (frames, -1)).flatten(0, 1).unflatten(-1, (self.heads, -1))
        # q: [B*F, G, Ha, Dh]
        k = self.norm_k(self.k(audio.tokens)).unflatten(-1, (self.heads, -1))
        v = self.v(audio.tokens).unflatten(-1, (self.heads, -1))  # [B, K, F, Na, Ha, Dh]
        masks = audio.face_masks.to(q.dtype)[:, :, None, :, None]  # [B, K, 1, G, 1]
        out = torch.zeros_like(q.flatten(2)).unflatten(0, (batch, frames))  # [B, F, G, Ia]
        for c in range(characters):
            heard = attention(q, k[:, c].flatten(0, 1), v[:, c].flatten(0, 1))  # [B*F, G, Ha, Dh]
            out = out + heard.flatten(2).unflatten(0, (batch, frames)) * masks[:, c]
        return self.o(out.flatten(1, 2))
