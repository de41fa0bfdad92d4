"""The evaluation runs end to end and its metrics measure what they claim."""

from __future__ import annotations

import math

import torch

from avatar_engine.audio.encoder import build_encoder
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.training.evaluate import Renderer, evaluate, identity_psnr, mouth_motion
from avatar_engine.vae.weights import random_vae
from avatar_engine.weights import random_dit
from tests.avatar_engine.training.conftest import MICRO_TRAIN


def test_every_figure_comes_out_of_a_random_model():
    preset = MICRO_TRAIN
    renderer = Renderer(
        random_dit(preset.dit, device="cpu", dtype=torch.float32),
        build_encoder(preset.audio, FrameGeometry.of_preset(preset)),
        random_vae(preset.vae, device="cpu", dtype=torch.float32),
        preset,
    )
    report, videos = evaluate(renderer, drift_minutes=0.02, progress=False)
    assert set(report.lipsync) == set(report.identity_psnr) == {"drawn", "lfw", "photo"}
    figures = [*report.lipsync.values(), *report.identity_psnr.values(), report.pair_ratio]
    assert all(math.isfinite(v) for v in figures) and report.silence_ratio >= 0
    assert set(report.drift) == {"first_minute_psnr", "last_minute_psnr", "change_db"}
    assert report.lipsync_bounds["data"] > 0.6  # the target is reachable on the data itself
    assert math.isfinite(report.lipsync_bounds["vae"])
    talk = videos["speaking_0_drawn"]
    assert talk.frames.dtype == torch.uint8 and talk.frames.shape[1:] == (64, 64, 3)
    assert len(talk.audio) == len(talk.frames) * 640 and talk.speaking.shape == (
        1,
        len(talk.frames),
    )
    assert talk.speaking[0].any() and not talk.speaking[0, -12:].any()  # silent after the turn


def test_identity_psnr_and_mouth_motion_measure_the_right_regions():
    reference = torch.rand(32, 32, 3)
    frames = (reference * 255).round().to(torch.uint8)[None].repeat(4, 1, 1, 1)
    mouth = (slice(20, 28), slice(10, 22))
    frames[2, mouth[0], mouth[1]] = 0  # the mouth opens in frame 2 only
    assert identity_psnr(frames, reference, [mouth]).min() > 45  # outside the mouth: unchanged
    motion = mouth_motion(frames, mouth)
    assert motion[0] == 0 and motion[1] == 0 and motion[2] > 50 and motion[3] > 50
