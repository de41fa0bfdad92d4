"""VAE checkpoints: our VAE equals diffusers' AutoencoderKLWan with identical weights; the
official Wan names are ours; bad checkpoints are reported key by key."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from safetensors.torch import save_file

from avatar_engine.config import VAEConfig
from avatar_engine.vae import build_vae, load_vae, save_vae
from avatar_engine.weights import WeightLoadError
from tests.avatar_engine.vae.test_vae import micro_vae_config, perturbed_vae
from tests.conftest import relative_error

MEAN = (0.3, -0.5, 0.1, 0.9)
STD = (1.5, 0.7, 2.0, 1.1)
# diffusers' single-file converter hard-codes Wan's 4 stages with num_res_blocks = 2.
WAN_SHAPED = dict(z_dim=4, base_dim=8, dim_mult=(1, 2, 4, 4), num_res_blocks=2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """diffusers' VAE with every weight perturbed, and ours loaded from its checkpoint."""
    torch.manual_seed(3)
    ref = AutoencoderKLWan(
        base_dim=WAN_SHAPED["base_dim"],
        z_dim=WAN_SHAPED["z_dim"],
        dim_mult=list(WAN_SHAPED["dim_mult"]),
        num_res_blocks=WAN_SHAPED["num_res_blocks"],
        latents_mean=list(MEAN),
        latents_std=list(STD),
    ).eval()
    with torch.no_grad():  # norm gains, biases and the attention output all non-trivial
        for name, param in ref.named_parameters():
            param.add_(torch.randn_like(param) * (0.3 if name.endswith("gamma") else 0.05))
    path = tmp_path_factory.mktemp("vae") / "diffusers.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    cfg = VAEConfig(**WAN_SHAPED, latent_mean=MEAN, latent_std=STD)
    return ref, load_vae(cfg, [path], key_format="diffusers")


def _stats() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(MEAN).view(1, -1, 1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1, 1)


def test_encode_matches_diffusers(reference):
    ref, ours = reference
    video = torch.rand(2, 3, 9, 32, 48, generator=torch.Generator().manual_seed(4)) * 2 - 1
    mean, std = _stats()
    with torch.no_grad():
        # diffusers' pipelines normalise outside the VAE: (mu - mean) / std
        expected = (ref.encode(video).latent_dist.mode() - mean) / std
        got = ours.encode_video(video)
    assert got.shape == expected.shape == (2, 4, 3, 4, 6)
    assert relative_error(got, expected) <= 1e-5


def test_decode_matches_diffusers(reference):
    ref, ours = reference
    z = torch.randn(2, 4, 5, 4, 6, generator=torch.Generator().manual_seed(5))
    mean, std = _stats()
    with torch.no_grad():
        expected = ref.decode(z * std + mean).sample  # diffusers decodes raw latents
        got, _ = ours.decode(z)
    assert got.shape == expected.shape == (2, 3, 17, 32, 48)
    assert float((expected.abs() == 1).float().mean()) < 0.5  # mostly not clamped
    assert relative_error(got, expected) <= 1e-5


def test_native_names_are_the_official_wan_names():
    """diffusers' own Wan-checkpoint converter maps our names onto AutoencoderKLWan exactly."""
    ours = build_vae(VAEConfig(**WAN_SHAPED, latent_mean=MEAN, latent_std=STD))
    with torch.device("meta"):
        ref = AutoencoderKLWan(
            base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2, latents_mean=list(MEAN)
        )
    converted = convert_wan_vae_to_diffusers(ours.state_dict())
    expected = ref.state_dict()
    assert set(converted) == set(expected)
    assert all(converted[n].shape == expected[n].shape for n in expected)


def test_wan_parameter_count_matches_diffusers():
    ours = build_vae(VAEConfig.from_name("wan2.1"))
    with torch.device("meta"):
        ref = AutoencoderKLWan()  # its defaults are the Wan2.1 VAE
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in ref.parameters())
    assert 126e6 < count < 128e6
    assert all(p.is_meta for p in ours.parameters())


def test_wan_checkpoint_round_trip(tmp_path):
    cfg = micro_vae_config()
    vae = perturbed_vae(cfg, seed=6)
    native = tmp_path / "native.safetensors"
    save_vae(vae, native)
    wrapped = tmp_path / "wan.safetensors"  # as some exporters write it
    save_file({f"vae.{k}": v.contiguous() for k, v in vae.state_dict().items()}, str(wrapped))
    z = torch.randn(1, 4, 3, 2, 3, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected, _ = vae.decode(z)
        for path, key_format in ((native, "native"), (wrapped, "wan")):
            loaded = load_vae(cfg, [path], key_format=key_format)
            assert torch.equal(loaded.decode(z)[0], expected)
            assert torch.equal(loaded.latent_std, torch.tensor(cfg.latent_std))


def test_bad_checkpoint_names_every_offending_key(tmp_path):
    cfg = micro_vae_config()
    state = perturbed_vae(cfg).state_dict()
    del state["decoder.head.2.bias"]
    state["decoder.head.3.weight"] = torch.zeros(1)
    state["conv2.weight"] = torch.zeros(4, 4, 1, 1, 2)
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(WeightLoadError) as err:
        load_vae(cfg, [path])
    message = str(err.value)
    assert "missing keys (1): decoder.head.2.bias" in message
    assert "unexpected keys (1): decoder.head.3.weight" in message
    assert "conv2.weight (4, 4, 1, 1, 2) vs model (4, 4, 1, 1, 1)" in message
    assert "key format" in message
    with pytest.raises(ValueError, match="unknown key format 'comfy'"):
        load_vae(cfg, [path], key_format="comfy")
