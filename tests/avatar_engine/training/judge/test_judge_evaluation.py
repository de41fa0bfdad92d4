"""The evaluation end to end on a small pool: the baselines fail it, the controls are computed,
and a model's run yields every figure."""

from __future__ import annotations

import math

import pytest
import torch

from avatar_engine.audio.encoder import build_encoder
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.training.judge.evaluate import Evaluation
from avatar_engine.training.judge.pools import DEV, Pool, Voice
from avatar_engine.training.judge.programs import BASELINES, Baseline, ModelProgram
from avatar_engine.training.judge.report import ROWS, failed, summary, table
from avatar_engine.vae.weights import random_vae
from avatar_engine.weights import random_dit

TINY = Preset.from_name("tiny")
GEOMETRY = FrameGeometry.of_preset(TINY)
SMALL = Pool(
    "unit",
    (DEV.source("hopper"), DEV.source("drawn-c")),
    (Voice("espeak", "en-us+m4"), Voice("flite", "kal16")),
    ("Meet me at noon.", "Bring the blue map."),
    ("hopper", "drawn-c"),
)


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return Evaluation(SMALL, TINY.stream.output_height, TINY.stream.fps, GEOMETRY.samples_per_frame)


@pytest.fixture(scope="module")
def encoder():
    return build_encoder(TINY.audio, GEOMETRY)


@pytest.fixture(scope="module")
def baselines(evaluation, encoder) -> dict[str, dict]:
    out = {}
    for kind in BASELINES:
        figures, _ = evaluation.run(Baseline(kind, encoder, TINY), drift_minutes=0.05,
                                    progress=False)  # fmt: skip
        out[kind] = (figures, summary(figures))
    return out


def test_every_baseline_fails_and_not_for_want_of_a_face(baselines):
    for kind, (_, s) in baselines.items():
        assert failed(s), f"the {kind} baseline passes every target"
        assert s["face_found"]["passes"], kind  # it fails on the mouth, not on detection
        assert s["identity"]["passes"], kind  # the picture itself is the person
    frozen = baselines["frozen"][1]
    assert frozen["lipsync"]["mean"] == 0 and not frozen["margin"]["passes"]
    assert math.isnan(frozen["silence"]["mean"]) and not frozen["silence"]["passes"]


def test_the_controls_are_computed_for_every_clip(baselines):
    for figures, _ in baselines.values():
        assert len(figures.clips) == len(SMALL.portraits) * len(SMALL.voices)
        for clip in figures.clips:
            assert -1 <= clip["control_other"] <= 1 and -1 <= clip["control_shifted"] <= 1
            assert clip["margin"] == pytest.approx(
                clip["lipsync"] - max(clip["control_other"], clip["control_shifted"])
            )


def test_the_table_has_every_figure_for_every_program(baselines):
    text = table({kind: s for kind, (_, s) in baselines.items()})
    assert all(row.label in text for row in ROWS)
    assert text.count("\n") == len(ROWS) + 1


def test_a_model_run_yields_every_figure(evaluation, encoder):
    torch.manual_seed(0)
    program = ModelProgram(
        random_dit(TINY.dit, device="cpu", dtype=torch.float32),
        encoder,
        random_vae(TINY.vae, device="cpu", dtype=torch.float32),
        TINY,
    )
    figures, evidence = evaluation.run(program, drift_minutes=0, progress=False)
    s = summary(figures)
    assert set(s) == {row.key for row in ROWS}
    assert set(evidence) == {"hopper", "drawn-c", "silent_hopper", "pair"}
    talk = evidence["hopper"]
    size = (TINY.stream.output_height, TINY.stream.output_width, 3)
    assert talk.frames.dtype == torch.uint8 and talk.frames.shape[1:] == size == (512, 512, 3)
    assert talk.raw.shape == talk.frames.shape and not torch.equal(talk.raw, talk.frames)
    assert len(talk.audio) == len(talk.frames) * GEOMETRY.samples_per_frame
    assert talk.speaking[0].any() and not talk.speaking[0, -12:].any()  # silent after the turn
    assert not s["face_found"]["passes"]  # random weights draw noise, not a face


def test_drift_compares_blocks_that_heard_the_same_speech(baselines):
    for kind in ("frozen", "tinted"):  # deterministic programs: nothing drifts
        drift = baselines[kind][0].drift
        assert drift["identity_change"] == 0 and drift["sharpness_change"] == 0, kind
        assert drift["minutes"] > 0.05
