"""Presets, derived sizes and validation."""

from __future__ import annotations

import pytest

from avatar_engine.config import PRESETS, DiTConfig, Preset, StreamConfig


def test_presets_and_derived_sizes():
    assert set(PRESETS) == {"tiny", "wan2.1-1.3b", "talkingmachines-14b"}
    big = Preset.from_name("talkingmachines-14b")
    assert (big.dit.dim, big.dit.num_layers, big.dit.num_heads) == (5120, 40, 40)
    assert (big.dit.ffn_dim, big.dit.in_dim, big.dit.head_dim) == (13824, 36, 128)
    assert big.dit.rope_split == (22, 21, 21)
    assert big.stream.tokens_per_latent_frame == 1024  # 512x512
    assert big.stream.tokens_per_chunk == 3072
    tiny = Preset.from_name("tiny").stream
    assert min(tiny.height, tiny.width) >= 128 and tiny.fps == 25
    assert tiny.video_frames_per_chunk == 12 and tiny.first_chunk_video_frames == 9
    assert tiny.chunk_duration_s == pytest.approx(0.48)
    assert tiny.num_steps == 2


def test_audio_window_covers_two_latent_frames_each_side():
    cfg = Preset.from_name("tiny").dit
    assert cfg.audio_window == 2 and cfg.audio_window_frames == 5 * 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dim=30, ffn_dim=8, num_heads=4, num_layers=1), "not divisible"),
        (dict(dim=32, ffn_dim=8, num_heads=2, num_layers=1, in_dim=16), "in_dim 16"),
        (dict(dim=32, ffn_dim=8, num_heads=2, num_layers=1, audio_heads=3), "audio_attn_dim"),
    ],
)
def test_bad_dit_config_is_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiTConfig(**kwargs)


def test_bad_stream_config_is_explained():
    with pytest.raises(ValueError, match="multiple of 16x16"):
        StreamConfig(height=100, width=128)
    with pytest.raises(ValueError, match="increasing"):
        StreamConfig(denoise_times=(0.5, 0.2))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        StreamConfig(denoise_times=(0.0, 1.0))


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match="known presets: tiny, wan2.1-1.3b"):
        Preset.from_name("huge")
