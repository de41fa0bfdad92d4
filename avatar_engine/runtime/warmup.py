"""Warming a runtime's parts up before its first session, so the first real chunk pays no
one-time cost (the allocator's first blocks, each kernel's first choice): the DiT runs every
chunk role once (the sink, the first and a steady chunk), the decoder the first chunk and a
later one, all on a blank scene."""

from __future__ import annotations

import torch

from avatar_engine.chunks import LatentChunk, chunk_latent_shape
from avatar_engine.runtime.spec import EngineSpec
from avatar_engine.scene import SceneConditioning
from avatar_engine.session import StreamSession
from avatar_engine.vae.chunk_decoder import ChunkDecoder
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.reference_decoder import ReferenceDecoder, StillPicture

WARMUP_CHUNKS = 3  # the sink, first and steady chunk roles


def blank_scene(spec: EngineSpec) -> SceneConditioning:
    """One character over a zero reference, at the preset's sizes."""
    cfg, stream = spec.preset.dit, spec.preset.stream
    return SceneConditioning(
        reference_latent=torch.zeros(1, cfg.out_dim, stream.latent_h, stream.latent_w),
        face_masks=torch.ones(1, 1, stream.grid_h, stream.grid_w),
        context=torch.zeros(1, cfg.text_len, cfg.text_dim),
        image_tokens=None if cfg.image_dim is None else torch.zeros(1, 1, cfg.image_dim),
    )


def warm_up_dit(session: StreamSession, spec: EngineSpec) -> None:
    """Run WARMUP_CHUNKS chunks of zero features, the character speaking, through a session of a
    blank scene (a sequence-parallel one on every DiT rank alike)."""
    cfg, stream = spec.preset.dit, spec.preset.stream
    features = torch.zeros(
        1, 1, stream.chunk_latent_frames, cfg.audio_window_frames, cfg.audio_feature_dim
    )  # [B, K, Fc, W, Da]
    for _ in range(WARMUP_CHUNKS):
        session.next_chunk(features, torch.ones(1, 1, dtype=torch.bool))


def warm_up_decoder(
    vae: WanVAE, spec: EngineSpec, reference_decoder: ReferenceDecoder | None = None
) -> None:
    """Decode a first chunk and a later one of zero latents (against a grey picture)."""
    stream = spec.preset.stream
    device = vae.conv2.weight.device
    picture = StillPicture(
        torch.full((1, stream.height, stream.width, 3), 128, dtype=torch.uint8, device=device),
        torch.zeros(1, spec.preset.vae.z_dim, stream.latent_h, stream.latent_w, device=device),
    )
    decoder = ChunkDecoder(vae, stream.fps, reference_decoder=reference_decoder, picture=picture)
    latents = torch.zeros(
        chunk_latent_shape(spec.preset.dit, stream, 1), device=vae.conv2.weight.device
    )
    no_speakers = torch.zeros(1, 0, dtype=torch.bool)
    for index in range(2):
        frames = stream.first_chunk_video_frames if index == 0 else stream.video_frames_per_chunk
        decoder.decode(LatentChunk(index, latents, 0, frames, no_speakers))
