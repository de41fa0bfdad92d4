"""The reference picture's detail is put back where a frame still shows the picture, and only
there: on the shipped VAE, a still comes back as the picture; a changed region stays changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_engine.chunks import VideoChunk
from avatar_engine.config import Preset
from avatar_engine.embedded import EmbeddedModel
from avatar_engine.scene import scene_from_image
from avatar_engine.training.data.portraits import draw_portrait
from avatar_engine.vae.detail import ReferenceDetail, encode_still
from avatar_engine.vae.video import to_uint8_frames

TINY = Preset.from_name("tiny")


@pytest.fixture(scope="module")
def vae():
    return EmbeddedModel().check().spec().build_vae("cpu")


@pytest.fixture(scope="module")
def picture() -> torch.Tensor:
    portrait = draw_portrait(np.random.default_rng(3), TINY.stream.height)
    return (portrait.image * 255).round().to(torch.uint8)[None]  # [1, H, W, 3]


def chunk_of(frames: torch.Tensor) -> VideoChunk:
    t = frames.shape[1]
    return VideoChunk(0, 0, frames, torch.arange(t).double() / 25, torch.zeros(1, 1).bool())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    err = (a.float() - b.float()).square().mean()
    return float(10 * torch.log10(255.0**2 / err))


def test_a_held_still_picture_comes_back_as_the_picture(vae, picture):
    detail = ReferenceDetail.of(vae, picture)
    assert torch.equal(detail.decoded + detail.residual, picture.float())
    still = picture.permute(0, 3, 1, 2)[:, :, None].expand(-1, -1, 33, -1, -1) / 127.5 - 1
    with torch.inference_mode():
        frames = to_uint8_frames(vae.decode(vae.encode_video(still))[0])  # 9 latent frames
    restored = detail.restore(chunk_of(frames)).frames
    steady = slice(16, None)  # past the STILL_LATENT_FRAMES the detail was measured at
    assert psnr(frames[0, steady], picture) < 30  # the VAE alone blurs it
    assert psnr(restored[0, steady], picture) > 40


def test_where_a_frame_changed_its_change_is_kept(vae, picture):
    detail = ReferenceDetail.of(vae, picture)
    frame = detail.decoded.round().to(torch.uint8)[:, None].clone()  # [1, 1, H, W, 3]
    frame[:, :, 70:100, 40:90] = 20  # a dark open mouth where the picture has a face
    restored = detail.restore(chunk_of(frame)).frames
    inside = (restored[:, :, 75:95, 45:85].int() - frame[:, :, 75:95, 45:85].int()).abs()
    assert inside.float().mean() < 1.0  # the picture's detail is not painted over the mouth
    outside = restored[:, :, :60], picture[:, None, :60]
    assert psnr(*outside) > 45  # and everywhere unchanged the picture is back


def test_the_tiny_preset_restores_detail_and_others_do_not(vae, picture):
    scene = scene_from_image(vae, TINY.dit, TINY.stream, picture[0], [(0.2, 0.2, 0.8, 0.8)])
    assert scene.detail is not None
    scene.validate(TINY.dit, TINY.stream)
    assert not Preset.from_name("wan2.1-1.3b").stream.restore_detail


def test_the_tiny_scene_conditions_later_frames_on_the_picture_held_still(vae, picture):
    """The causal VAE encodes frame 0 alone and later frames in groups: a still picture's later
    latents differ from its image latent by about a latent's size, and the scene gives the DiT
    one within a tenth of that of where they settle."""
    scene = scene_from_image(vae, TINY.dit, TINY.stream, picture[0], [(0.2, 0.2, 0.8, 0.8)])
    assert TINY.dit.still_reference and scene.blank_latent is not None
    still = scene.blank_latent
    assert torch.equal(still, encode_still(vae, picture)[:, :, -1].float())
    frames = picture.permute(0, 3, 1, 2)[:, :, None].expand(-1, -1, 37, -1, -1) / 127.5 - 1
    with torch.inference_mode():
        settled = vae.encode_video(frames)[:, :, -1]  # 10 latent frames in

    def rms(x: torch.Tensor) -> float:
        return float(x.square().mean().sqrt())

    image_error = rms(scene.reference_latent - settled)
    assert image_error > 0.3 * rms(settled)
    assert rms(still - settled) < 0.1 * image_error
