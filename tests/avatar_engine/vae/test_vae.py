"""The causal VAE: streaming decode equals one-shot decode; encoding; presets; frames."""

from __future__ import annotations

import pytest
import torch

from avatar_engine.config import PRESETS, VAE_PRESETS, VAEConfig
from avatar_engine.vae import DecoderState, WanVAE, layers, random_vae, to_uint8_frames
from tests.conftest import relative_error

Z = 4


def micro_vae_config(**overrides) -> VAEConfig:
    """Wan's structure (3 spatial and 2 temporal x2 stages) at toy widths."""
    fields = dict(
        z_dim=Z,
        base_dim=4,
        dim_mult=(1, 2, 2, 4),
        num_res_blocks=1,
        latent_mean=(0.3, -0.5, 0.1, 0.9),
        latent_std=(1.5, 0.7, 2.0, 1.1),
    )
    fields.update(overrides)
    return VAEConfig(**fields)


def perturbed_vae(cfg: VAEConfig, seed: int = 0) -> WanVAE:
    """Random weights with nothing trivially zero or one (norm gains, attention output)."""
    vae = random_vae(cfg, device="cpu", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in vae.named_parameters():
            scale = 0.3 if name.endswith("gamma") else 0.05
            param.add_(torch.randn(param.shape, generator=gen) * scale)
    return vae


@pytest.fixture(scope="module")
def vae() -> WanVAE:
    return perturbed_vae(micro_vae_config())


def _decode_in_chunks(vae: WanVAE, z: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    out, state, start = [], None, 0
    for size in sizes:
        frames, state = vae.decode(z[:, :, start : start + size], state)
        out.append(frames)
        start += size
    assert state.latent_frames == z.shape[2]
    return out


@pytest.mark.parametrize("sizes", [[3, 3, 3], [1, 2, 3, 1], [2, 1, 1, 1, 4]])
def test_streaming_decode_equals_one_shot(vae, sizes):
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(2, Z, sum(sizes), 3, 5, generator=gen)  # non-square, batch of 2
    with torch.no_grad():
        whole, _ = vae.decode(z)
        chunks = _decode_in_chunks(vae, z, sizes)
    assert whole.shape == (2, 3, 1 + 4 * (sum(sizes) - 1), 24, 40)
    assert [c.shape[2] for c in chunks] == [1 + 4 * (sizes[0] - 1)] + [4 * s for s in sizes[1:]]
    assert relative_error(torch.cat(chunks, dim=2), whole) <= 1e-5
    assert 0.5 > float((whole.abs() == 1).float().mean())  # mostly not clamped: a real check
    assert whole.min() >= -1 and whole.max() <= 1


def test_decoder_state_is_fixed_shape_after_the_first_chunk(vae):
    z = torch.randn(1, Z, 7, 2, 2)
    with torch.no_grad():
        _, first = vae.decode(z[:, :, :1])
        _, second = vae.decode(z[:, :, 1:4], first)
        _, third = vae.decode(z[:, :, 4:7], second)

    def leaves(state: DecoderState) -> list[tuple[int, ...]]:
        flat, todo = [], [state.caches]
        while todo:
            item = todo.pop()
            if isinstance(item, tuple):
                todo.extend(item)
            elif item is not None:
                flat.append(tuple(item.shape))
        return flat

    assert leaves(second) == leaves(third) and len(leaves(second)) > 0
    assert (first.latent_frames, second.latent_frames, third.latent_frames) == (1, 4, 7)
    with pytest.raises(AttributeError):
        third.latent_frames = 0  # frozen: a state is never changed, only replaced


def test_encode_clip_image_and_chunked(vae):
    gen = torch.Generator().manual_seed(2)
    video = torch.rand(2, 3, 13, 16, 24, generator=gen) * 2 - 1
    with torch.no_grad():
        latent = vae.encode_video(video)
        image = vae.encode_image(video[:, :, 0])
        chunked = [vae.encode_video(video, latent_frames_per_call=n) for n in (1, 2)]
    assert latent.shape == (2, Z, 4, 2, 3)
    assert image.shape == (2, Z, 2, 3)
    # Causal: the first latent frame depends on the first video frame only.
    assert relative_error(image, latent[:, :, 0]) <= 1e-5
    for other in chunked:
        assert relative_error(other, latent) <= 1e-5


def test_encode_normalises_and_decode_denormalises(vae):
    mu = torch.randn(1, Z, 2, 3, 3)
    cfg = vae.cfg
    mean = torch.tensor(cfg.latent_mean).view(1, Z, 1, 1, 1)
    std = torch.tensor(cfg.latent_std).view(1, Z, 1, 1, 1)
    assert torch.allclose(vae.normalize(mu), (mu - mean) / std)
    assert torch.allclose(vae.denormalize(vae.normalize(mu)), mu, atol=1e-6)


def test_bad_clip_length_is_explained(vae):
    with pytest.raises(ValueError, match=r"1 \+ 4\*n frames"):
        vae.encode_video(torch.zeros(1, 3, 4, 16, 16))
    with pytest.raises(ValueError, match="multiple of 8x8"):
        vae.encode_image(torch.zeros(1, 3, 12, 16))


def test_uint8_frames():
    video = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 4, 1, 1).expand(2, 3, 4, 1, 1)
    frames = to_uint8_frames(video)
    assert frames.shape == (2, 4, 1, 1, 3) and frames.dtype == torch.uint8
    assert frames[1, :, 0, 0, 0].tolist() == [0, 128, 255, 255]


def test_presets():
    assert set(VAE_PRESETS) == {"tiny", "wan2.1"}
    assert PRESETS["tiny"].vae is VAE_PRESETS["tiny"]
    for name in ("wan2.1-1.3b", "talkingmachines-14b"):
        assert PRESETS[name].vae is VAE_PRESETS["wan2.1"]
    wan = VAEConfig.from_name("wan2.1")
    assert wan.decoder_dims == (384, 384, 384, 192, 96)
    assert wan.decoder_res_blocks == 3 and wan.cache_frames == 2
    assert wan.temporal_upsample == (True, True, False)
    assert wan.latent_std[0] == 2.8184 and wan.latent_mean[-1] == -0.2921
    tiny = VAEConfig.from_name("tiny")
    assert (tiny.z_dim, tiny.stride) == (16, (4, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temporal_downsample=(True, True)), "one entry per downsample"),
        (dict(temporal_downsample=(True, True, True)), "stride"),
        (dict(z_dim=8), "z_dim = 8 values"),
        (dict(num_res_blocks=0), "at least 1"),
    ],
)
def test_bad_vae_config_is_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig(**kwargs)


def test_unknown_vae_preset_lists_known_ones():
    with pytest.raises(ValueError, match="known VAE presets: wan2.1, tiny"):
        VAEConfig.from_name("huge")


@pytest.mark.parametrize("width", [0, 10_000])
def test_both_causal_conv_paths_agree(vae, monkeypatch, width):
    """Per-tap convs and the all-taps-at-once conv (narrow layers) compute the same thing."""
    video = torch.rand(1, 3, 9, 16, 16, generator=torch.Generator().manual_seed(8)) * 2 - 1
    z = torch.randn(1, Z, 3, 2, 2, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected = vae.encode_video(video), vae.decode(z)[0]
        monkeypatch.setattr(layers, "STACKED_TAPS_MAX_WIDTH", width)
        got = vae.encode_video(video), vae.decode(z)[0]
    for a, b in zip(got, expected, strict=True):
        assert relative_error(a, b) <= 1e-5


def test_wrong_latent_width_is_explained(vae):
    with pytest.raises(ValueError, match=r"latents \[B, 4, T >= 1, h, w\], got \(1, 16, 3, 2, 2\)"):
        vae.decode(torch.zeros(1, 16, 3, 2, 2))


def test_encode_and_decode_are_trainable():
    """The in-place ops of the fast path leave autograd intact (the tiny VAE is trained)."""
    vae = perturbed_vae(micro_vae_config(), seed=10).train()
    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(11)) * 2 - 1
    latent = vae.encode_video(video)
    frames, _ = vae.decode(latent)
    ((frames - video) ** 2).mean().backward()
    missing = [n for n, p in vae.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing
