"""Speech goes to the speaking character; everyone else listens, end to end into the DiT."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from avatar_engine.audio.encoder import build_encoder
from avatar_engine.audio.feature_stream import extract_features
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.audio.routing import route_to_speaker
from avatar_engine.session import StreamSession
from tests.avatar_engine.audio.conftest import TINY
from tests.conftest import MICRO_STREAM, make_scene, micro_dit, random_model


def test_speaker_gets_the_features_and_listeners_get_silence():
    features = torch.randn(3, 20, 8)
    routed, speaking = route_to_speaker(features, 1, 3)
    assert routed.shape == (1, 3, 3, 20, 8)
    assert torch.equal(routed[0, 1], features)
    assert not routed[0, [0, 2]].any()
    assert speaking.tolist() == [[False, True, False]]
    quiet, nobody = route_to_speaker(None, None, 2, feature_shape=(3, 20, 8))
    assert quiet.shape == (1, 2, 3, 20, 8) and not quiet.any() and not nobody.any()


def test_bad_routing_is_refused():
    with pytest.raises(ValueError, match="not one of the scene's 2"):
        route_to_speaker(torch.zeros(3, 20, 8), 2, 2)
    with pytest.raises(ValueError, match="no speaker"):
        route_to_speaker(torch.zeros(3, 20, 8), None, 2)
    with pytest.raises(ValueError, match="feature_shape"):
        route_to_speaker(None, None, 2)


def test_speech_stream_drives_the_session_for_the_speaker_only():
    cfg = micro_dit()
    audio_cfg = dataclasses.replace(TINY.audio, feature_dim=cfg.audio_feature_dim)
    geometry = FrameGeometry.of(cfg, MICRO_STREAM, audio_cfg)
    encoder = build_encoder(audio_cfg, geometry)
    speech = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.3
    chunks = extract_features(encoder, geometry, speech, 16000)
    model, scene = random_model(cfg), make_scene(cfg, MICRO_STREAM, characters=2)

    def run(speaker: int, chunk_features) -> list[torch.Tensor]:
        session = StreamSession(model, MICRO_STREAM, scene, seed=3)
        return [
            session.next_chunk(*route_to_speaker(c.features, speaker, 2)).latents
            for c in chunk_features
        ]

    as_speaker_0 = run(0, chunks)
    other_speech = extract_features(encoder, geometry, speech[::-1].copy(), 16000)
    # Character 1 speaking different words changes the video...
    assert not torch.allclose(run(1, chunks)[0], run(1, other_speech)[0])
    # ...while the same words for character 0 always give the same video.
    assert all(torch.equal(a, b) for a, b in zip(as_speaker_0, run(0, chunks), strict=True))
