"""The clip forward trains: gradients reach every module through the sparse-causal window."""

from __future__ import annotations

import torch

from avatar_engine.model.window import ClipWindow
from tests.conftest import (
    MICRO_STREAM,
    audio_for,
    make_scene,
    micro_dit,
    random_features,
    random_model,
)


def test_gradients_reach_every_parameter():
    cfg = micro_dit()
    model = random_model(cfg).train()
    scene = make_scene(cfg, MICRO_STREAM, characters=2)
    frames = 2 * MICRO_STREAM.chunk_latent_frames
    shape = (1, cfg.out_dim, frames, MICRO_STREAM.latent_h, MICRO_STREAM.latent_w)
    cond = torch.cat(
        [scene.reference_channels(MICRO_STREAM, cfg.temporal_stride, first=f) for f in (1, 0)],
        dim=2,
    )
    speaking = torch.zeros(1, 2, frames, dtype=torch.bool)
    speaking[:, 0] = True  # character 0 speaks, character 1 listens
    out = model.forward_clip(
        torch.randn(shape),
        cond,
        torch.tensor([300.0, 800.0])[None].repeat_interleave(3, 1),
        context=scene.context,
        audio=audio_for(scene, random_features(cfg, frames), speaking),
        window=ClipWindow.SPARSE_CAUSAL,
    )
    out.square().mean().backward()
    silent = {"characters.speaking"}  # only the speaking rows of used slots get gradient
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        if name not in silent:
            assert param.grad.abs().sum() > 0, name
    grad = model.characters.speaking.grad
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0
    assert model.characters.silence.grad[1].abs().sum() > 0
