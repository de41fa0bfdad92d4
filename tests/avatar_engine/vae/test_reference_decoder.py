"""The reference decoder: untrained it returns the picture; its stream equals one call; it
counts frames as the causal VAE does; the chunk decoder and the canvas use it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from avatar_engine.chunks import LatentChunk
from avatar_engine.config import VAEConfig
from avatar_engine.vae.chunk_decoder import ChunkDecoder
from avatar_engine.vae.detail import decode_still
from avatar_engine.vae.reference_decoder import ReferenceDecoder, StillPicture
from avatar_engine.vae.video import from_uint8_frames
from avatar_engine.vae.weights import random_vae

CFG = VAEConfig.from_name("tiny")


def trained_looking(seed: int = 0) -> ReferenceDecoder:
    """Random weights throughout, its output layer too (untrained, that layer is zero)."""
    torch.manual_seed(seed)
    decoder = ReferenceDecoder(CFG).eval()
    torch.nn.init.normal_(decoder.out.weight, std=0.05)
    return decoder


def picture(seed: int = 1, size: int = 64) -> StillPicture:
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (1, size, size, 3), generator=gen, dtype=torch.uint8)
    latent = torch.randn(1, CFG.z_dim, size // 8, size // 8, generator=gen)
    return StillPicture(pixels, latent)


def latents(frames: int, seed: int = 2, size: int = 8) -> torch.Tensor:
    return torch.randn(
        1, CFG.z_dim, frames, size, size, generator=torch.Generator().manual_seed(seed)
    )


def test_untrained_it_returns_the_picture_whatever_the_latents():
    decoder = ReferenceDecoder(CFG).eval()
    pixels = from_uint8_frames(picture().pixels)
    with torch.no_grad():
        video, _ = decoder.decode(latents(3), decoder.start(picture()))
    assert video.shape == (1, 3, 9, 64, 64)
    assert torch.allclose(video, pixels[:, :, None].expand_as(video), atol=1e-6)


def test_a_stream_decoded_chunk_by_chunk_equals_one_call():
    decoder, z = trained_looking(), latents(9)
    start = decoder.start(picture())
    with torch.no_grad():
        whole, _ = decoder.decode(z, start)
        parts, state = [], start
        for c in range(3):
            part, state = decoder.decode(z[:, :, 3 * c : 3 * c + 3], state)
            parts.append(part)
    assert [p.shape[2] for p in parts] == [9, 12, 12]  # 1 + 4·2 first, 4·3 after
    assert torch.allclose(torch.cat(parts, dim=2), whole, atol=1e-5)
    assert not torch.allclose(parts[1], parts[2])  # the latents do reach the frames
    other = replace(picture(), latent=picture(seed=5).latent)
    with torch.no_grad():
        against, _ = decoder.decode(z, decoder.start(other))
    assert not torch.allclose(against, whole)  # and so does the still latent


def test_the_chunk_decoder_draws_with_it_and_needs_the_picture():
    vae, decoder = random_vae(CFG, device="cpu", dtype=torch.float32, seed=0), trained_looking()
    with pytest.raises(ValueError, match="picture"):
        ChunkDecoder(vae, 25, reference_decoder=decoder)
    chunks = ChunkDecoder(vae, 25, reference_decoder=decoder, picture=picture())
    plain = ChunkDecoder(vae, 25)
    chunk = LatentChunk(0, latents(3), 0, 9, torch.zeros(1, 0, dtype=torch.bool))
    drawn = chunks.decode(chunk).frames
    assert drawn.shape == (1, 9, 64, 64, 3)
    assert not torch.equal(drawn, plain.decode(chunk).frames)
    with torch.no_grad():
        want, _ = decoder.decode(latents(3), decoder.start(picture()))
    assert torch.equal(drawn, ((want.permute(0, 2, 3, 4, 1) + 1) * 127.5).round().to(torch.uint8))


def test_the_still_the_canvas_measures_against_is_the_reference_decoders():
    vae, decoder = random_vae(CFG, device="cpu", dtype=torch.float32, seed=0), trained_looking()
    still = latents(5)
    with torch.no_grad():
        want, _ = decoder.decode(still, decoder.start(picture()))
    got = decode_still(vae, still, reference_decoder=decoder, picture=picture())
    expected = ((want[:, :, -1].permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255)
    assert torch.equal(got, expected)
    assert not torch.equal(got, decode_still(vae, still))


def test_the_state_keeps_no_view_of_the_callers_latents():
    """The decoder rank receives each chunk into one of two buffers, reused two chunks later:
    a state that kept a view of the last latent frame would change under the next chunk."""
    decoder, z = trained_looking(), latents(6)
    with torch.no_grad():
        buffer = z[:, :, :3].clone()
        _, state = decoder.decode(buffer, decoder.start(picture()))
        buffer.normal_()  # the buffer's next use
        got, _ = decoder.decode(z[:, :, 3:], state)
        want, _ = decoder.decode(
            z[:, :, 3:], decoder.decode(z[:, :, :3], decoder.start(picture()))[1]
        )
    assert torch.equal(got, want)
