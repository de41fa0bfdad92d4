"""Every training stage runs, resumes from its checkpoint, and exports a loadable model."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.audio.routing import route_to_speaker
from avatar_engine.embedded import EmbeddedModel
from avatar_engine.scene import scene_from_image
from avatar_engine.session import StreamSession
from avatar_engine.training.batch import dit_inputs
from avatar_engine.training.data.clips import make_clip
from avatar_engine.training.decoder import train_decoder
from avatar_engine.training.distill import (
    data_target,
    guidance_scale,
    silenced,
    student_data,
    train_student,
)
from avatar_engine.training.loop import load_trained, read_log
from avatar_engine.training.teacher import latent_pool, new_speaker, train_teacher
from avatar_engine.training.vae import latent_statistics, train_vae
from avatar_engine.vae.reference_decoder import ReferenceDecoder
from avatar_engine.vae.video import from_uint8_frames
from avatar_engine.vae.weights import random_vae
from tests.avatar_engine.training.conftest import MICRO_TRAIN


def test_stages_train_resume_and_export(tmp_path):
    small = dict(pool_size=2, seed=1)
    vae = train_vae(
        MICRO_TRAIN,
        tmp_path / "vae",
        steps=2,
        crop=32,
        batch=2,
        long_window=9,
        long_crop=16,
        **small,
    )
    sharper = train_vae(MICRO_TRAIN, tmp_path / "decoder", steps=1, crop=32, batch=2,
                        init_from=tmp_path / "vae", decoder_only=True, **small)  # fmt: skip
    pairs = zip(sharper.encoder.parameters(), vae.encoder.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(sharper.decoder.head[-1].weight, vae.decoder.head[-1].weight)
    teacher = train_teacher(MICRO_TRAIN, vae, tmp_path / "teacher", steps=2, chunks=2, **small)
    student = train_student(
        MICRO_TRAIN, vae, teacher, tmp_path / "student", steps=2, dmd_weight=0.5, chunks=2, **small
    )
    logs = {s: list(read_log(tmp_path / s)) for s in ("vae", "teacher", "student")}
    assert [len(v) for v in logs.values()] == [2, 2, 2]
    assert {"regression", "dmd", "fake_score"} <= set(logs["student"][0])
    assert all(torch.isfinite(torch.tensor(r["loss" if "loss" in r else "regression"]))
               for v in logs.values() for r in v)  # fmt: skip
    assert not torch.equal(student.dit.blocks[0].ffn[0].weight, teacher.dit.blocks[0].ffn[0].weight)

    # Asking for more steps resumes where the checkpoint left off.
    train_teacher(MICRO_TRAIN, vae, tmp_path / "teacher", steps=3, chunks=2, **small)
    assert [r["step"] for r in read_log(tmp_path / "teacher")] == [1, 2, 3]

    decoder = train_decoder(MICRO_TRAIN, vae, tmp_path / "reference", steps=2, batch=2, **small)
    assert [r["step"] for r in read_log(tmp_path / "reference")] == [1, 2]
    assert decoder.out.weight.abs().sum() > 0  # it learnt something beyond the picture

    model = EmbeddedModel(tmp_path / "model")
    model.save(dit=student.dit, vae=vae, encoder=student.encoder, reference_decoder=decoder)
    assert {p.stat().st_mode & 0o777 for p in model.directory.iterdir()} == {0o644}
    spec = model.spec()
    spec = replace(spec, preset=MICRO_TRAIN)
    dit, loaded_vae = spec.build_dit("cpu"), spec.build_vae("cpu")
    loaded_decoder = spec.build_reference_decoder("cpu")
    assert torch.equal(dit.blocks[0].ffn[0].weight, student.dit.blocks[0].ffn[0].weight)
    assert torch.equal(loaded_decoder.out.weight, decoder.out.weight)
    picture = torch.full((64, 64, 3), 128, dtype=torch.uint8)
    scene = scene_from_image(loaded_vae, MICRO_TRAIN.dit, MICRO_TRAIN.stream, picture,
                             [(0.2, 0.2, 0.8, 0.8)], reference_decoder=loaded_decoder)  # fmt: skip
    session = StreamSession(
        dit, MICRO_TRAIN.stream, scene, vae=loaded_vae, reference_decoder=loaded_decoder
    )
    g = FrameGeometry.of_preset(MICRO_TRAIN)
    shape = (3, g.window_frames, MICRO_TRAIN.dit.audio_feature_dim)
    chunk = session.next_frames(*route_to_speaker(None, None, 1, feature_shape=shape))
    assert chunk.frames.shape == (1, 9, 64, 64, 3)

    # Training goes on from an exported model: its DiT and speech encoder, or its VAE.
    again = load_trained(tmp_path / "model", "teacher", new_speaker(MICRO_TRAIN, seed=9))
    assert torch.equal(again.dit.blocks[0].ffn[0].weight, student.dit.blocks[0].ffn[0].weight)
    vae_again = load_trained(
        tmp_path / "model", "vae", random_vae(MICRO_TRAIN.vae, device="cpu", seed=9)
    )
    assert torch.equal(vae_again.conv1.weight, vae.conv1.weight)
    decoder_again = load_trained(tmp_path / "model", "decoder", ReferenceDecoder(MICRO_TRAIN.vae))
    assert torch.equal(decoder_again.out.weight, decoder.out.weight)
    onwards = train_decoder(MICRO_TRAIN, vae, tmp_path / "reference2", steps=1, batch=2, lr=0.0,
                            init_from=tmp_path / "model", **small)  # fmt: skip
    assert torch.equal(onwards.out.weight, decoder.out.weight)  # lr 0: the weights it started from
    model.save(dit=student.dit, vae=vae, encoder=student.encoder)  # no reference decoder now
    assert not model.reference_decoder.exists() and not model.spec().reference_decoder_weights
    with pytest.raises(FileNotFoundError, match="reference_decoder"):
        load_trained(tmp_path / "model", "decoder", ReferenceDecoder(MICRO_TRAIN.vae))


def test_latent_statistics_normalise_the_clips_they_were_measured_on():
    vae = random_vae(MICRO_TRAIN.vae, device="cpu", dtype=torch.float32, seed=0)
    mean, std = latent_statistics(vae, MICRO_TRAIN, clips=2, seed=4)
    assert len(mean) == len(std) == MICRO_TRAIN.vae.z_dim
    vae.latent_mean, vae.latent_std = torch.tensor(mean), torch.tensor(std)
    geometry = FrameGeometry.of_preset(MICRO_TRAIN)
    size = MICRO_TRAIN.stream.height
    latents = []
    for index in range(2):
        clip = make_clip(4, index, geometry=geometry, size=size, latent_frames=7)
        frames = (clip.video * 255).round().to(torch.uint8)
        video = from_uint8_frames(frames).transpose(0, 1)[None]
        latents.append(vae.encode_video(video)[0].flatten(1))
    z = torch.cat(latents, dim=1)  # [z, N], normalised with the measured statistics
    assert torch.allclose(z.mean(1), torch.zeros(len(mean)), atol=1e-3)
    assert torch.allclose(z.std(1), torch.ones(len(mean)), atol=1e-3)


def test_latent_pool_replaces_a_clip_every_refresh_every_samples():
    vae = random_vae(MICRO_TRAIN.vae, device="cpu", dtype=torch.float32, seed=0)
    pool, _ = latent_pool(vae, MICRO_TRAIN, seed=2, chunks=1, capacity=2, refresh_every=3)
    for _ in range(8):
        pool.sample(1)
    assert pool.made == 4  # two to fill it, then a fresh clip at samples 3 and 6


def test_a_student_learns_from_the_clips_or_hears_as_its_teacher(tmp_path):
    small = dict(pool_size=2, seed=1, chunks=2)
    vae = random_vae(MICRO_TRAIN.vae, device="cpu", seed=3)
    teacher, other = new_speaker(MICRO_TRAIN, seed=4), new_speaker(MICRO_TRAIN, seed=5)
    with pytest.raises(ValueError, match="--init"):
        train_student(MICRO_TRAIN, vae, None, tmp_path / "none", steps=1, **small)

    # On the clips: no teacher, the student starts from `init` and keeps its speech encoder.
    student = train_student(MICRO_TRAIN, vae, None, tmp_path / "data", steps=2, init=other,
                            **small)  # fmt: skip
    log = list(read_log(tmp_path / "data"))
    assert len(log) == 2 and "teacher_vs_data" not in log[0]
    assert log[0]["regression"] > 0
    assert not torch.equal(student.dit.blocks[0].ffn[0].weight, other.dit.blocks[0].ffn[0].weight)
    assert _same_encoder(student, other)

    # Guided on the clips: the mouths' targets move away from the student's own listening
    # prediction by the guidance; elsewhere, and unguided, the target is the clip.
    pool, geometry = latent_pool(vae, MICRO_TRAIN, 1, 2, 1)
    inputs = dit_inputs(pool.sample(1), student.encoder, geometry, MICRO_TRAIN)
    x = torch.randn_like(inputs.x1)
    assert torch.equal(data_target(student.dit, inputs, x, 0.5, 1.0), inputs.x1)
    scale = guidance_scale(inputs, 3.0, mouths_only=True)
    guided = data_target(student.dit, inputs, x, 0.5, scale)
    listening = student_data(student.dit, silenced(inputs), x, 0.5)
    away = (scale == 1).expand_as(guided)
    assert away.any() and not away.all()
    assert torch.allclose(guided[away], inputs.x1[away], atol=1e-5)
    assert torch.allclose(guided - listening, scale * (inputs.x1 - listening), atol=1e-5)
    assert scale.max() == 3
    train_student(MICRO_TRAIN, vae, None, tmp_path / "guided", steps=1, init=other,
                  guidance=2.0, mouths_only=True, **small)  # fmt: skip

    # From a teacher, starting from another student: it hears the speech as its teacher does.
    student = train_student(MICRO_TRAIN, vae, teacher, tmp_path / "ode", steps=1, init=other,
                            **small)  # fmt: skip
    assert _same_encoder(student, teacher) and not _same_encoder(student, other)


def _same_encoder(a, b) -> bool:
    pairs = zip(a.encoder.parameters(), b.encoder.parameters(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)
