"""Our trunk equals diffusers' WanTransformer3DModel with identical weights (I2V config)."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from avatar_engine.model.dit import AUDIO_MODULES
from avatar_engine.weights import WeightLoadError, load_dit
from tests.conftest import micro_dit, relative_error

DIFFUSERS_TEXT_LEN = 512  # diffusers hard-codes the text length when splitting image tokens


def _reference_pair(tmp_path):
    torch.manual_seed(1)
    ref = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=36,
        out_channels=16,
        text_dim=24,
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=40,
        added_kv_proj_dim=32,
    ).eval()
    with torch.no_grad():  # every weight random, norms and biases included
        for param in ref.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    path = tmp_path / "diffusers.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    cfg = micro_dit(text_len=DIFFUSERS_TEXT_LEN, image_dim=40, image_len=5)
    ours = load_dit(cfg, [path], key_format="diffusers", allow_missing=AUDIO_MODULES)
    return ref, ours


def test_trunk_matches_diffusers_i2v(tmp_path):
    ref, ours = _reference_pair(tmp_path)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 16, 5, 8, 12, generator=gen)  # non-square, several latent frames
    cond = torch.randn(2, 20, 5, 8, 12, generator=gen)
    text = torch.randn(2, DIFFUSERS_TEXT_LEN, 24, generator=gen)
    image = torch.randn(2, 5, 40, generator=gen)
    timestep = torch.tensor([130.0, 870.0])
    with torch.no_grad():
        expected = ref(
            torch.cat([x, cond], dim=1), timestep, text, encoder_hidden_states_image=image
        ).sample
        got = ours.forward_clip(x, cond, timestep, context=text, image_tokens=image)
    assert got.shape == expected.shape
    # ~5e-6 of this is diffusers' fp32 timestep sinusoid; we compute it in float64 as official
    # Wan does. With the sinusoid shared the two agree to ~3e-7.
    assert relative_error(got, expected) <= 1e-5


def test_plain_trunk_needs_audio_allowance(tmp_path):
    ref, _ = _reference_pair(tmp_path)
    cfg = micro_dit(text_len=DIFFUSERS_TEXT_LEN, image_dim=40, image_len=5)
    with pytest.raises(WeightLoadError, match=r"blocks\.0\.audio_attn\.q\.weight"):
        load_dit(cfg, [tmp_path / "diffusers.safetensors"], key_format="diffusers")
