"""Each character's audio reaches only its face region; a listening character's audio is unused."""

from __future__ import annotations

import pytest
import torch

from avatar_engine.model.audio import AudioContext
from avatar_engine.model.window import ClipWindow
from tests.conftest import (
    MICRO_STREAM,
    audio_for,
    make_scene,
    micro_dit,
    random_features,
    random_model,
)

FC = MICRO_STREAM.chunk_latent_frames


def _clip_inputs(cfg, scene):
    gen = torch.Generator().manual_seed(3)
    shape = (1, cfg.out_dim, FC, MICRO_STREAM.latent_h, MICRO_STREAM.latent_w)
    x = torch.randn(shape, generator=gen)
    cond = scene.reference_channels(MICRO_STREAM, cfg.temporal_stride, first=True)
    return x, cond


def test_character_audio_reaches_only_its_face_region():
    cfg = micro_dit()
    model = random_model(cfg)
    scene = make_scene(cfg, MICRO_STREAM, characters=2)
    block = model.blocks[0]
    tokens = torch.randn(1, 2, FC, cfg.audio_tokens, cfg.audio_token_dim)
    masks = scene.face_masks.flatten(2)  # [1, 2, G]
    x = torch.randn(1, FC * MICRO_STREAM.tokens_per_latent_frame, cfg.dim)
    with torch.no_grad():
        base = block.audio_attn(x, AudioContext(tokens=tokens, face_masks=masks))
        for k in range(2):
            changed = tokens.clone()
            changed[:, k] = torch.randn_like(changed[:, k]) * 3
            out = block.audio_attn(x, AudioContext(tokens=changed, face_masks=masks))
            inside = masks[0, k].bool().repeat(FC)  # [F*G] query tokens in k's face
            delta = (out - base)[0]  # [F*G, D]
            assert torch.equal(delta[~inside], torch.zeros_like(delta[~inside]))
            assert delta[inside].abs().min(dim=-1).values.gt(0).all()


def test_no_face_region_means_no_audio_contribution():
    cfg = micro_dit()
    block = random_model(cfg).blocks[0]
    tokens = torch.randn(1, 1, FC, cfg.audio_tokens, cfg.audio_token_dim)
    x = torch.randn(1, FC * MICRO_STREAM.tokens_per_latent_frame, cfg.dim)
    empty = torch.zeros(1, 1, MICRO_STREAM.tokens_per_latent_frame)
    with torch.no_grad():
        out = block.audio_attn(x, AudioContext(tokens=tokens, face_masks=empty))
    # Only the output projection's bias remains: the audio itself contributes nothing.
    assert torch.equal(out, block.audio_attn.o.bias.expand_as(out))


@pytest.mark.parametrize("listener", [0, 1])
def test_listening_character_ignores_its_audio(listener):
    cfg = micro_dit()
    model = random_model(cfg)
    scene = make_scene(cfg, MICRO_STREAM, characters=2)
    x, cond = _clip_inputs(cfg, scene)
    speaking = torch.ones(1, 2, FC, dtype=torch.bool)
    speaking[:, listener] = False
    features = random_features(cfg, FC)
    fresh = random_features(cfg, FC, seed=9)  # not features' draws
    other = features.clone()
    other[:, listener] = fresh[:, listener]
    speaker_changed = features.clone()
    speaker_changed[:, 1 - listener] = fresh[:, 1 - listener]

    def run(feats, talk):
        with torch.no_grad():
            return model.forward_clip(
                x,
                cond,
                torch.tensor([500.0]),
                context=scene.context,
                audio=audio_for(scene, feats, talk),
                window=ClipWindow.SPARSE_CAUSAL,
            )

    base = run(features, speaking)
    assert torch.equal(run(other, speaking), base)
    assert not torch.allclose(run(speaker_changed, speaking), base)  # the speaker's audio counts
    assert not torch.allclose(run(features, torch.ones_like(speaking)), base)  # silence != speech


def test_too_many_characters_is_a_clear_error():
    cfg = micro_dit(max_characters=2)
    model = random_model(cfg)
    tokens = torch.randn(1, 3, FC, cfg.audio_tokens, cfg.audio_token_dim)
    with pytest.raises(ValueError, match="at most 2"):
        model.characters(tokens, torch.ones(1, 3, FC, dtype=torch.bool))
