"""Synthetic data: deterministic, aligned with the stream, and moving with the speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_engine.audio.encoder import build_encoder
from avatar_engine.audio.feature_stream import extract_features
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.framing import photo_portrait
from avatar_engine.training.data.clips import KIND_WEIGHTS, kind_weights, make_clip
from avatar_engine.training.data.portraits import (
    HELD_OUT_PHOTO,
    TRAIN_PHOTOS,
    landmarked_portrait,
    mirrored,
    named_photo,
)
from avatar_engine.training.features import clip_windows
from avatar_engine.training.judge import faces, metrics
from tests.avatar_engine.training.conftest import MICRO_TRAIN

GEOMETRY = FrameGeometry.of_preset(MICRO_TRAIN)


def clip(index: int, kind: str | None = None, size: int = 64):
    return make_clip(3, index, geometry=GEOMETRY, size=size, latent_frames=9, kind=kind)


def test_clip_features_equal_the_streams():
    encoder = build_encoder(MICRO_TRAIN.audio, GEOMETRY)
    wave = torch.randn(16000 * 2, generator=torch.Generator().manual_seed(1)) * 0.1
    streamed = torch.cat([c.features for c in extract_features(encoder, GEOMETRY, wave, 16000)])
    with torch.no_grad():
        whole = clip_windows(encoder, GEOMETRY, wave[None], streamed.shape[0])[0]
    assert (whole - streamed).abs().max() < 1e-5


def test_the_pairs_share_sets_the_kinds_odds():
    assert kind_weights(0.3) == pytest.approx(KIND_WEIGHTS)
    speaking, silence, pair = kind_weights(0.6)
    assert pair == 0.6 and speaking + silence == pytest.approx(0.4)
    assert speaking / silence == pytest.approx(KIND_WEIGHTS[0] / KIND_WEIGHTS[1])
    with pytest.raises(ValueError, match="fraction"):
        kind_weights(1.5)
    for index in range(3):
        drawn = make_clip(3, index, geometry=GEOMETRY, size=64, latent_frames=3,
                          kind_weights=kind_weights(1.0))  # fmt: skip
        assert drawn.kind == "pair" and len(drawn.mouths) == 2


def test_clips_are_deterministic_and_varied():
    a, b, c = clip(0), clip(0), clip(1)
    assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio)
    assert not torch.equal(a.video, c.video)
    frames = 1 + 4 * 8
    assert a.video.shape == (frames, 64, 64, 3) and a.video.min() >= 0 and a.video.max() <= 1
    known = {"drawn", "lfw", *TRAIN_PHOTOS}
    sources = [s for i in range(12) for s in clip(i).sources]
    assert set(sources) <= known and len(set(sources)) >= 3
    assert len(clip(2, "pair").sources) == 2
    held_out = make_clip(3, 0, geometry=GEOMETRY, size=64, latent_frames=9, held_out=True,
                         kind="speaking")  # fmt: skip
    assert held_out.sources[0] in {"drawn", "lfw", HELD_OUT_PHOTO}


def test_speaking_flags_follow_chunks_and_pairs_have_one_speaker():
    pair = clip(2, "pair")
    assert pair.speaking_latents.shape == (2, 9)
    listener = 1 - pair.speaker
    assert not pair.speaking_latents[listener].any() and pair.speaking_latents[pair.speaker].any()
    flags = pair.speaking_latents[pair.speaker].view(3, 3)  # chunks of 3 latent frames
    assert (flags == flags[:, :1]).all()  # decided per chunk, as in streaming
    silent = clip(3, "silence")
    assert silent.speaker is None and not silent.speaking_latents.any()
    assert silent.audio.abs().max() == 0


def test_the_mouth_moves_with_speech_and_rests_in_silence():
    """As the evaluation's face analyser sees it: the inner lips open with the speech, and
    hardly move in silence."""
    talk = clip(4, "speaking", size=128)
    quiet = clip(4, "silence", size=128)

    def opening(c) -> np.ndarray:
        u8 = (c.video * 255).round().to(torch.uint8).numpy()
        return metrics.lip_opening(faces.track_face(u8, c.face_boxes[0]).landmarks)

    speaking = opening(talk)
    env = metrics.envelope(talk.audio.numpy(), len(speaking), GEOMETRY.samples_per_frame)
    assert metrics.lagged_sync(speaking, env, np.ones(len(env), bool))[0] > 0.6
    assert metrics.spread(opening(quiet)) < 0.25 * metrics.spread(speaking)


def test_the_held_out_photo_has_a_detected_face():
    image, (row, col, side) = named_photo(HELD_OUT_PHOTO)
    assert image.ndim == 3 and side > 100 and 0 < row < image.shape[0] - side


def test_every_photo_has_its_mouth_where_its_face_mesh_found_it():
    """Each training photo's face is found as the product finds faces, and its mouth and eyes
    come from the annotation (tools/annotate_photos.py), inside the face: the mouth below the
    eyes, between them, in the face's lower half; mirrored, they move with the picture."""
    for name in (*TRAIN_PHOTOS, HELD_OUT_PHOTO):
        p = landmarked_portrait(name, 128, zoom=0.5)
        x0, y0, x1, y1 = p.face_box
        mx, my, mw = p.mouth
        (lx, ly, _), (rx, ry, _) = sorted(p.eyes)
        assert lx < mx < rx and max(ly, ry) < my, name
        assert y0 + 0.5 * (y1 - y0) < my < y1 and 0.1 < 2 * mw / (x1 - x0) < 0.7, name
        flipped = mirrored(p)
        assert torch.equal(flipped.image, p.image.flip(1))
        assert flipped.mouth == pytest.approx((1 - mx, my, mw))
    old_rule = photo_portrait(*named_photo("astronaut"), 128, zoom=0.5).mouth
    mesh = landmarked_portrait("astronaut", 128, zoom=0.5).mouth
    assert mesh[1] - old_rule[1] > 0.03  # the rule put the opening on her upper lip
