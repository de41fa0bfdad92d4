"""StreamSession inputs, hand-off and scene validation."""

from __future__ import annotations

import pytest
import torch

from avatar_engine.scene import SceneConditioning, face_mask_from_box
from avatar_engine.session import StreamSession
from tests.conftest import MICRO_STREAM, make_scene, micro_dit, random_features, random_model


def test_scene_shape_errors_name_the_input():
    cfg = micro_dit()
    scene = make_scene(cfg, MICRO_STREAM)
    bad = SceneConditioning(
        reference_latent=scene.reference_latent[..., :4],
        face_masks=scene.face_masks,
        context=scene.context,
    )
    with pytest.raises(ValueError, match="reference_latent has shape"):
        StreamSession(random_model(cfg), MICRO_STREAM, bad)


def test_chunk_input_shape_error():
    cfg = micro_dit()
    session = StreamSession(random_model(cfg), MICRO_STREAM, make_scene(cfg, MICRO_STREAM))
    with pytest.raises(
        ValueError, match=r"features need \[streams, characters, latent frames, window, dim\]"
    ):
        session.next_chunk(random_features(cfg, 2), torch.tensor([[True, False]]))
    with pytest.raises(ValueError, match=r"= \(1, 2, 3, 20, 12\)"):
        session.next_chunk(random_features(cfg, 3)[..., :5], torch.tensor([[True, False]]))


def test_image_tokens_required_by_i2v_models():
    cfg = micro_dit(image_dim=8, image_len=3)
    with pytest.raises(ValueError, match="needs CLIP image tokens"):
        StreamSession(random_model(cfg), MICRO_STREAM, make_scene(cfg, MICRO_STREAM))


def test_reference_channels_follow_wan_i2v():
    cfg = micro_dit()
    scene = make_scene(cfg, MICRO_STREAM)
    first = scene.reference_channels(MICRO_STREAM, cfg.temporal_stride, first=True)
    rest = scene.reference_channels(MICRO_STREAM, cfg.temporal_stride, first=False)
    stride = cfg.temporal_stride
    assert first.shape == (1, cfg.cond_dim, 3, MICRO_STREAM.latent_h, MICRO_STREAM.latent_w)
    assert first[:, :stride, 0].eq(1).all() and first[:, :stride, 1:].eq(0).all()
    assert torch.equal(first[:, stride:, 0], scene.reference_latent)
    assert torch.equal(first[:, stride:, 1], scene.blank_latent)
    assert rest[:, :stride].eq(0).all() and torch.equal(rest[:, stride:, 0], scene.blank_latent)


def test_face_mask_from_box():
    mask = face_mask_from_box(MICRO_STREAM, (0.0, 0.0, 0.5, 1.0))  # 4x4 token grid
    assert mask.shape == (4, 4) and mask[:, :2].eq(1).all() and mask[:, 2:].eq(0).all()
    with pytest.raises(ValueError, match="must satisfy"):
        face_mask_from_box(MICRO_STREAM, (0.6, 0.0, 0.5, 1.0))
    tiny = face_mask_from_box(MICRO_STREAM, (0.3, 0.55, 0.4, 0.6))  # between token centres
    assert tiny.sum() == 1 and tiny[2, 1] == 1  # the token under its centre (0.35, 0.575)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_hot_path_never_syncs_with_the_host():
    cfg = micro_dit()
    model = random_model(cfg).cuda()
    session = StreamSession(model, MICRO_STREAM, make_scene(cfg, MICRO_STREAM))
    features, talk = random_features(cfg, 3).cuda(), torch.tensor([[True, False]]).cuda()
    for _ in range(3):
        session.next_chunk(features, talk)  # warm-up: chunk roles 0 and 1 differ
    torch.cuda.set_sync_debug_mode("error")
    try:
        session.next_chunk(features, talk)
    finally:
        torch.cuda.set_sync_debug_mode("default")
