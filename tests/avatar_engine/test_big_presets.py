"""The large presets stream on the meta device: every shape fits, in bf16, with no memory."""

from __future__ import annotations

import pytest
import torch

from avatar_engine.cache import StreamCache
from avatar_engine.config import Preset
from avatar_engine.model.audio import AudioConditioning
from avatar_engine.model.window import ChunkRole, StreamingWindow, slot_tables
from avatar_engine.weights import build_dit

META = torch.device("meta")


@pytest.mark.parametrize("name", ["wan2.1-1.3b", "talkingmachines-14b"])
def test_preset_streams_three_roles_on_meta(name):
    cfg, stream = Preset.from_name(name).dit, Preset.from_name(name).stream
    model = build_dit(cfg).to_compute_dtype(torch.bfloat16)
    image = None if cfg.image_dim is None else torch.empty(1, cfg.image_len, cfg.image_dim)
    context_kv = model.context_kv(
        torch.empty(1, cfg.text_len, cfg.text_dim, device=META),
        None if image is None else image.to(META),
    )
    cache = StreamCache(cfg, stream, batch=1, device=META, dtype=torch.bfloat16)
    slots = slot_tables(cfg, stream.chunk_latent_frames, stream.grid_h, stream.grid_w, META)
    frames = stream.chunk_latent_frames
    audio = model.audio_context(
        AudioConditioning(
            features=torch.empty(
                1, 2, frames, cfg.audio_window_frames, cfg.audio_feature_dim, device=META
            ),
            speaking=torch.ones(1, 2, frames, dtype=torch.bool, device=META),
            face_masks=torch.empty(1, 2, stream.grid_h, stream.grid_w, device=META),
        )
    )
    assert audio.tokens.shape == (1, 2, frames, cfg.audio_tokens, cfg.audio_token_dim)
    x = torch.empty(1, cfg.out_dim, frames, stream.latent_h, stream.latent_w, device=META)
    cond = torch.empty(1, cfg.cond_dim, frames, stream.latent_h, stream.latent_w, device=META)
    for index in range(3):  # sink, first, steady
        window = StreamingWindow(ChunkRole.of(index), slots, cache.steps[0])
        out = model.forward_chunk(
            x,
            cond,
            torch.empty(1, device=META),
            context_kv=context_kv,
            audio=audio,
            window=window,
        )
        assert out.shape == x.shape and out.dtype == torch.bfloat16
    assert cache.storage.is_meta
