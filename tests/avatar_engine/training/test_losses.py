"""The DiT stages' losses: faces and mouths weighted, and the teacher's ODE guided by the speech."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.scene import scene_from_image
from avatar_engine.training.batch import MOUTH_SHARE, dit_inputs, encode_clip, mouth_cells
from avatar_engine.training.data.clips import make_clip
from avatar_engine.training.data.motion import mouth_region
from avatar_engine.training.decoder import decoder_loss
from avatar_engine.training.distill import guidance_scale, silenced, teacher_ode
from avatar_engine.training.teacher import (
    FACE_WEIGHT,
    MOUTH_WEIGHT,
    latent_pool,
    new_speaker,
    speech_weighted_mse,
)
from avatar_engine.vae.weights import random_vae
from tests.avatar_engine.training.conftest import MICRO_TRAIN


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    vae = random_vae(MICRO_TRAIN.vae, device="cpu", dtype=torch.float32, seed=0)
    speaker = new_speaker(MICRO_TRAIN, seed=0).eval()
    pool, geometry = latent_pool(vae, MICRO_TRAIN, seed=5, chunks=2, capacity=2)
    with torch.no_grad():
        inputs = dit_inputs(pool.sample(1), speaker.encoder, geometry, MICRO_TRAIN)
    speaking = torch.zeros_like(inputs.audio.speaking)
    speaking[:, 0] = True  # character 0 speaks throughout, so the two conditions differ
    inputs = dataclasses.replace(inputs, audio=dataclasses.replace(inputs.audio, speaking=speaking))
    return speaker, inputs


def test_face_and_mouth_cells_weigh_more_and_a_uniform_error_stays_itself(setup):
    _, inputs = setup
    x = inputs.x1
    faces = inputs.audio.face_masks.amax(dim=1)[:, None]  # [B, 1, gh, gw]
    faces = torch.nn.functional.interpolate(faces, size=x.shape[-2:], mode="nearest")[:, :, None]
    mouths = (inputs.mouths > 0).float()[:, None, None]  # [B, 1, 1, h, w]
    assert 0 < mouths.mean() < faces.mean() < 1  # a mouth, a face, a background
    assert speech_weighted_mse(x + 1, x, inputs) == pytest.approx(1.0)
    classes = {  # disjoint cells (face?, mouth?): their weight
        (face, mouth): (1 + FACE_WEIGHT * face + MOUTH_WEIGHT * mouth)
        for face in (0, 1)
        for mouth in (0, 1)
    }
    cells = {key: (faces == key[0]) & (mouths == key[1]) for key in classes}
    total = sum(classes[key] * float(cells[key].float().mean()) for key in classes)
    for key, weight in classes.items():  # a unit error on one class of cells alone
        expected = weight * float(cells[key].float().mean()) / total
        error = speech_weighted_mse(x + cells[key].float(), x, inputs)
        assert float(error) == pytest.approx(expected)


def test_training_conditions_the_frames_as_the_stream_does():
    """The first latent frame carries the reference and mask 1, the others the picture held
    still (still_reference) and mask 0: the channels the streaming session gives its chunks."""
    stream, cfg = MICRO_TRAIN.stream, MICRO_TRAIN.dit
    geometry = FrameGeometry.of_preset(MICRO_TRAIN)
    clip = make_clip(4, 0, geometry=geometry, size=stream.height, latent_frames=6, kind="speaking")
    vae = random_vae(MICRO_TRAIN.vae, device="cpu", dtype=torch.float32, seed=0)
    speaker = new_speaker(MICRO_TRAIN, seed=0)
    with torch.no_grad():
        cond = dit_inputs([encode_clip(vae, clip, MICRO_TRAIN)], speaker.encoder, geometry,
                          MICRO_TRAIN).cond  # fmt: skip
    picture = (clip.reference * 255).round().to(torch.uint8)
    scene = scene_from_image(vae, cfg, stream, picture, list(clip.face_boxes))
    per = stream.chunk_latent_frames
    first = scene.reference_channels(stream, cfg.temporal_stride, first=True)
    later = scene.reference_channels(stream, cfg.temporal_stride, first=False)
    assert torch.allclose(cond[:, :, :per], first, atol=1e-5)
    assert torch.allclose(cond[:, :, per:], later, atol=1e-5)
    reference = cond[:, cfg.temporal_stride :]
    assert not torch.allclose(reference[:, :, 0], reference[:, :, 1], atol=1e-2)


def test_the_mouth_cells_cover_the_mouth_region():
    """The latent cells marked as mouth are those the mouth's pixels (and jaw drop) fall in."""
    clip = make_clip(3, 0, geometry=FrameGeometry.of_preset(MICRO_TRAIN),
                     size=MICRO_TRAIN.stream.height, latent_frames=3)  # fmt: skip
    vae = random_vae(MICRO_TRAIN.vae, device="cpu", dtype=torch.float32, seed=0)
    cells = encode_clip(vae, clip, MICRO_TRAIN).mouths
    scale = MICRO_TRAIN.stream.height // cells.shape[0]
    rows, cols = mouth_region(clip.mouths[0], MICRO_TRAIN.stream.height)
    expected = torch.zeros_like(cells)
    expected[
        rows.start // scale : -(-rows.stop // scale), cols.start // scale : -(-cols.stop // scale)
    ] = 1
    assert torch.equal((cells > 0).float(), expected)


def test_even_mouths_weigh_a_small_mouth_as_much_as_a_large_one(setup):
    """A half-size mouth (a pair's) covers fewer latent cells; each of them weighs more, so
    together they weigh MOUTH_SHARE of the cells, as much as a full-size mouth's do, and only
    with even_mouths."""
    large, small = (0.5, 0.6, 0.1), (0.5, 0.6, 0.05)
    grid = (16, 16)
    big_cells = mouth_cells([large], 128, grid)
    small_cells = mouth_cells([small], 128, grid)
    assert set(big_cells.unique().tolist()) == {0.0, 1.0}
    assert small_cells.max() > 1
    assert float(small_cells.sum()) == pytest.approx(MOUTH_SHARE * 256)
    both = mouth_cells([(0.25, 0.6, 0.05), (0.75, 0.6, 0.1)], 128, grid)
    assert both[:, :8].max() == small_cells.max() and both[:, 8:].max() == 1

    _, inputs = setup
    weights = torch.zeros_like(inputs.mouths)
    weights[inputs.mouths > 0] = 3.0  # as if the clip's mouth were small
    inputs = dataclasses.replace(inputs, mouths=weights)
    x = inputs.x1
    on_mouth = x + (weights > 0).float()[:, None, None]
    plain = speech_weighted_mse(on_mouth, x, inputs)
    assert speech_weighted_mse(on_mouth, x, inputs, even_mouths=True) > plain
    assert speech_weighted_mse(x + 1, x, inputs, even_mouths=True) == pytest.approx(1.0)


def test_guidance_one_is_the_plain_ode_and_zero_the_all_listening_one(setup):
    speaker, inputs = setup
    x0 = torch.randn_like(inputs.x1)
    times = (0.0, 0.5)
    plain = teacher_ode(speaker.dit, inputs, x0, times)
    same = teacher_ode(speaker.dit, inputs, x0, times, guidance=1.0)
    quiet = teacher_ode(speaker.dit, silenced(inputs), x0, times)
    unguided = teacher_ode(speaker.dit, inputs, x0, times, guidance=0.0)
    assert torch.equal(plain[1], same[1])
    assert torch.allclose(unguided[1], quiet[1], atol=1e-5)
    assert not torch.allclose(plain[1], quiet[1], atol=1e-3)
    guided = teacher_ode(speaker.dit, inputs, x0, times, guidance=3.0)[1]
    assert (guided - quiet[1]).norm() > (plain[1] - quiet[1]).norm()


def test_guidance_on_the_mouths_only_scales_the_mouths_and_their_neighbours(setup):
    _, inputs = setup
    assert guidance_scale(inputs, 3.0, mouths_only=False) == 3.0
    scale = guidance_scale(inputs, 3.0, mouths_only=True)[:, 0, 0]  # [B, h, w]
    mouths = inputs.mouths.bool()
    assert (scale[mouths] == 3.0).all()
    next_to = torch.zeros_like(mouths[0])  # within one cell of a mouth cell, diagonals too
    for row, col in mouths[0].nonzero().tolist():
        next_to[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2] = True
    assert (scale[0][next_to] == 3.0).all()
    assert (scale[0][~next_to] == 1.0).all() and (~next_to).any()


def test_guidance_on_the_mouths_only_moves_the_mouths_most(setup):
    """The first Euler step differs from the plain ODE on the mouths' cells only; after all
    steps the difference is still largest there (attention spreads the rest)."""
    speaker, inputs = setup
    x0 = torch.randn_like(inputs.x1)
    plain = teacher_ode(speaker.dit, inputs, x0, ())[1]
    assert torch.equal(teacher_ode(speaker.dit, inputs, x0, (), mouths_only=True)[1], plain)
    guided = teacher_ode(speaker.dit, inputs, x0, (), guidance=3.0, mouths_only=True)[1]
    change = (guided - plain).abs().mean(dim=(1, 2))  # [B, h, w]
    near = guidance_scale(inputs, 3.0, mouths_only=True)[:, 0, 0] > 1
    assert change[near].mean() > 3 * change[~near].mean()


def test_the_decoder_loss_is_zero_on_the_target_and_weighs_the_mouth():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 5, 16, 16, generator=gen) * 2 - 1
    weights = torch.ones(1, 1, 1, 16, 16)
    weights[..., 8:12, 4:12] = 11  # a mouth
    assert float(decoder_loss(target, target, weights)["loss"]) == 0.0
    at_mouth, elsewhere = target.clone(), target.clone()
    at_mouth[:, :, 2, 9, 6] += 0.5
    elsewhere[:, :, 2, 2, 6] += 0.5
    mouth_loss = float(decoder_loss(at_mouth, target, weights)["loss"])
    assert mouth_loss == pytest.approx(11 * float(decoder_loss(elsewhere, target, weights)["loss"]))
