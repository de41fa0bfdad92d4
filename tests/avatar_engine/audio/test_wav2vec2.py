"""The wav2vec2 encoder from a local directory: stacked layers at the video fps, streaming
equal to offline, and clear errors instead of downloads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from avatar_engine.audio.encoder import build_encoder
from avatar_engine.audio.feature_stream import extract_features
from avatar_engine.config import AudioConfig
from tests.avatar_engine.audio.conftest import GEOMETRY, mel_stream, push_in_pieces

HIDDEN, LAYERS = 16, 3
AUDIO = AudioConfig(
    encoder="wav2vec2",
    feature_dim=HIDDEN * 2,
    wav2vec2_layers=(1, 3),
    wav2vec2_context_frames=10,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small randomly initialised wav2vec2 saved the way a real one is distributed."""
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    path = tmp_path_factory.mktemp("wav2vec2")
    Wav2Vec2Model(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(path)
    return path


def test_features_stack_the_chosen_layers_at_the_video_fps(checkpoint):
    encoder = build_encoder(AUDIO, GEOMETRY, wav2vec2_path=checkpoint)
    wave = torch.randn(2, 40 * GEOMETRY.samples_per_frame)  # 40 video frames
    features = encoder(wave)
    assert features.shape == (2, 40, AUDIO.feature_dim)
    # The first block of the stack is layer 1's hidden state, interpolated from 50 Hz to 25 fps.
    normed = (wave - wave.mean(1, keepdim=True)) / (wave.var(1, keepdim=True) + 1e-7).sqrt()
    hidden = encoder.model(normed, output_hidden_states=True).hidden_states[1]  # [2, T50, H]
    assert hidden.shape[1] == 2 * 40 - 1  # wav2vec2's 20 ms hop, 25 ms receptive field
    assert torch.allclose(features[:, 0, :HIDDEN], hidden[:, 0], atol=1e-6)
    assert torch.allclose(features[:, -1, :HIDDEN], hidden[:, -1], atol=1e-6)


def test_streaming_equals_offline(checkpoint):
    encoder = build_encoder(AUDIO, GEOMETRY, wav2vec2_path=checkpoint)
    audio = (np.random.default_rng(0).standard_normal((int(2.2 * 48000), 2)) * 3000).astype(
        np.int16
    )
    offline = extract_features(encoder, GEOMETRY, audio, 48000)
    streamed = push_in_pieces(mel_stream(encoder), audio, 48000, seed=5)
    assert len(streamed) == len(offline) == 5
    for a, b in zip(streamed, offline, strict=True):
        assert a.features.shape == (3, GEOMETRY.window_frames, AUDIO.feature_dim)
        assert float((a.features - b.features).abs().max()) <= 1e-6


def test_missing_checkpoint_is_a_clear_error_not_a_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_encoder(AUDIO, GEOMETRY, wav2vec2_path=tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="local directory"):
        build_encoder(AUDIO, GEOMETRY)


def test_width_mismatch_is_explained(checkpoint):
    wrong = dataclasses.replace(AUDIO, feature_dim=HIDDEN * 3, wav2vec2_layers=(1, 2, 4))
    with pytest.raises(ValueError, match="this wav2vec2 has 3 layers"):
        build_encoder(wrong, GEOMETRY, wav2vec2_path=checkpoint)
    with pytest.raises(ValueError, match="48-dim features but 2 layers"):
        build_encoder(
            dataclasses.replace(AUDIO, feature_dim=48), GEOMETRY, wav2vec2_path=checkpoint
        )
