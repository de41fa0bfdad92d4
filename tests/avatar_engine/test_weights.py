"""Meta build, safetensors loading with assign, key converters and their error reports."""

from __future__ import annotations

import os
import resource

import pytest
import torch
from safetensors.torch import save_file

from avatar_engine.config import Preset
from avatar_engine.costs import parameter_counts
from avatar_engine.model.dit import AUDIO_MODULES, names_match
from avatar_engine.weights import WeightLoadError, build_dit, load_dit, random_dit, save_dit
from tests.conftest import MICRO_STREAM, make_scene, micro_dit, random_model


def _outputs(model, cfg):
    scene = make_scene(cfg, MICRO_STREAM, characters=1)
    x = torch.randn(1, cfg.out_dim, 3, MICRO_STREAM.latent_h, MICRO_STREAM.latent_w)
    cond = scene.reference_channels(MICRO_STREAM, cfg.temporal_stride, first=True)
    with torch.no_grad():
        return model.forward_clip(x, cond, torch.tensor([400.0]), context=scene.context)


def test_native_round_trip(tmp_path):
    cfg = micro_dit()
    model = random_model(cfg, seed=3)
    save_dit(model, tmp_path / "m.safetensors")
    loaded = load_dit(cfg, [tmp_path / "m.safetensors"])
    assert not any(p.is_meta for p in loaded.parameters())
    torch.manual_seed(9)
    expected = _outputs(model, cfg)
    torch.manual_seed(9)
    assert torch.equal(_outputs(loaded, cfg), expected)


def test_wan_names_with_wrapper_prefix_and_shards(tmp_path):
    cfg = micro_dit()
    model = random_model(cfg, seed=4)
    state = {f"model.diffusion_model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    names = sorted(state)
    half = len(names) // 2
    save_file({k: state[k] for k in names[:half]}, str(tmp_path / "a.safetensors"))
    save_file({k: state[k] for k in names[half:]}, str(tmp_path / "b.safetensors"))
    loaded = load_dit(
        cfg, [tmp_path / "a.safetensors", tmp_path / "b.safetensors"], key_format="wan"
    )
    for name, param in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], param), name


def test_missing_and_unexpected_keys_are_named(tmp_path):
    cfg = micro_dit()
    state = {k: v.contiguous() for k, v in random_model(cfg).state_dict().items()}
    del state["blocks.1.ffn.0.weight"]
    state["blocks.1.ffn.9.weight"] = torch.zeros(1)
    state["head.head.bias"] = torch.zeros(3)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightLoadError) as err:
        load_dit(cfg, [tmp_path / "bad.safetensors"])
    message = str(err.value)
    assert "missing keys (1): blocks.1.ffn.0.weight" in message
    assert "unexpected keys (1): blocks.1.ffn.9.weight" in message
    assert "head.head.bias (3,) vs model (64,)" in message


def test_plain_trunk_loads_with_audio_modules_allowed(tmp_path):
    cfg = micro_dit()
    state = {
        k: v.contiguous()
        for k, v in random_model(cfg).state_dict().items()
        if not names_match(k, AUDIO_MODULES)
    }
    save_file(state, str(tmp_path / "trunk.safetensors"))
    with pytest.raises(WeightLoadError, match="audio_proj.frame_proj.weight"):
        load_dit(cfg, [tmp_path / "trunk.safetensors"])
    model = load_dit(cfg, [tmp_path / "trunk.safetensors"], allow_missing=AUDIO_MODULES)
    audio = [p for n, p in model.named_parameters() if names_match(n, AUDIO_MODULES)]
    assert audio and all(p.device.type == "cpu" and torch.isfinite(p).all() for p in audio)
    assert model.characters.silence.std() > 0  # initialised, not left empty


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown key format"):
        load_dit(micro_dit(), [], key_format="ckpt")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_dit(micro_dit(), [tmp_path / "nope.safetensors"])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_14b_builds_on_meta_without_memory():
    preset = Preset.from_name("talkingmachines-14b")
    before = _rss_bytes()
    model = build_dit(preset.dit)
    grown = _rss_bytes() - before
    assert all(p.is_meta for p in model.parameters())
    assert grown < 200 * 2**20, f"meta build took {grown / 2**20:.0f} MiB"
    counts = parameter_counts(model)
    # Wan2.1 I2V-14B: the 14B T2V core plus a 2.1B CLIP image branch.
    assert 13.9e9 < counts.trunk - counts.image < 14.5e9
    assert 2.0e9 < counts.image < 2.2e9
    assert 1.1e9 < counts.audio < 1.35e9
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < 8 * 2**30


def test_a_random_model_moves_no_other_draw():
    """random_dit and random_vae seed their own initialisation and leave torch's generator
    where it was: the same seed gives the same weights, and the caller's next draw is the one
    it would have been."""
    from avatar_engine.config import VAEConfig
    from avatar_engine.vae.weights import random_vae

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = random_dit(micro_dit(), device="cpu", dtype=torch.float32, seed=5)
    vae = random_vae(VAEConfig.from_name("tiny"), device="cpu", seed=5)
    assert torch.equal(torch.rand(3), expected)
    again = random_dit(micro_dit(), device="cpu", dtype=torch.float32, seed=5)
    assert torch.equal(first.blocks[0].ffn[0].weight, again.blocks[0].ffn[0].weight)
    assert torch.equal(vae.conv1.weight, random_vae(vae.cfg, device="cpu", seed=5).conv1.weight)
