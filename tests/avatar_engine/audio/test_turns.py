"""Turns known in advance: each starts at the chunk after the one before, its features are the
feature stream's, they reach only their speaker, and the audio sits under its frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_engine.audio.feature_stream import extract_features
from avatar_engine.audio.turns import Turn, plan_turns
from tests.avatar_engine.audio.conftest import GEOMETRY, TINY


def noise(seconds: float, rate: int, seed: int) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(
        np.float32
    )


def test_turns_follow_each_other_at_chunk_boundaries(mel_encoder):
    rate = 24000
    first, second = Turn(1, noise(1.3, rate, 0), rate), Turn(0, noise(0.7, rate, 1), rate)
    plan = plan_turns(mel_encoder, TINY, [first, second])
    alone = extract_features(mel_encoder, GEOMETRY, first.audio, rate)
    assert plan.starts == (0, alone[-1].index + 1)
    for c in alone:  # the first turn's chunks are exactly the stream's, spoken by character 1
        speaker, features = plan.features[c.index]
        assert speaker == 1 and torch.equal(features, c.features)
    assert {plan.features[t][0] for t in plan.features if t >= plan.starts[1]} == {0}

    routed, speaking = plan.inputs(0, characters=2)  # [1, K, Fc, W, Da], [1, K]
    assert speaking.tolist() == [[False, True]] and not routed[0, 0].any()
    after = max(plan.features) + 1
    routed, speaking = plan.inputs(after, characters=2)
    assert not speaking.any() and routed.shape[2:] == plan.feature_shape

    audio = plan.audio(rate)
    start = GEOMETRY.chunk_start_frame(plan.starts[1]) * rate // GEOMETRY.fps
    assert len(audio) == start + len(second.audio)
    assert np.array_equal(audio[: len(first.audio)], first.audio)
    assert not audio[len(first.audio) : start].any()  # silence between the turns
    assert np.array_equal(audio[start:], second.audio)


def test_bad_turns_are_refused(mel_encoder):
    with pytest.raises(ValueError, match="turn 1 .speaker 0. has no audio"):
        plan_turns(
            mel_encoder,
            TINY,
            [Turn(0, noise(0.5, 16000, 0), 16000), Turn(0, noise(0, 16000, 0), 16000)],
        )
    plan = plan_turns(
        mel_encoder,
        TINY,
        [Turn(0, noise(0.5, 16000, 0), 16000), Turn(1, noise(0.5, 8000, 1), 8000)],
    )
    with pytest.raises(ValueError, match="not all at 16000 Hz"):
        plan.audio(16000)
