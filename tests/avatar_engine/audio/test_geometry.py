"""Video frames and samples: a Timeline at any audio rate, FrameGeometry's chunks on one."""

from __future__ import annotations

import pytest

from avatar_engine.audio.geometry import FrameGeometry, Timeline
from avatar_engine.config import PRESETS


@pytest.mark.parametrize(("rate", "fps", "sizes"), [(24000, 25, {960}), (44110, 25, {1764, 1765})])
def test_frames_hold_rate_over_fps_samples_without_drift(rate, fps, sizes):
    timeline = Timeline(rate, fps)
    assert {timeline.samples_in(v) for v in range(1000)} == sizes
    assert timeline.sample(100_000) == 100_000 * rate // fps  # rounding never accumulates
    assert abs(timeline.sample(12_345) - 12_345 * rate / fps) <= 0.5


@pytest.mark.parametrize("first", [0, 9, 1234])
def test_frames_for_is_the_fewest_frames_that_hold_the_samples(first):
    timeline = Timeline(44110, 25)
    for samples in (1, 1764, 1765, 3529, 50_000):
        n = timeline.frames_for(first, samples)
        held = timeline.sample(first + n) - timeline.sample(first)
        assert held >= samples > held - timeline.samples_in(first + n - 1)


def test_the_geometry_reads_its_samples_off_a_timeline_at_the_features_rate():
    g = FrameGeometry.of_preset(PRESETS["tiny"])
    assert g.timeline == Timeline(g.sample_rate, g.fps)
    for chunk in range(5):
        assert g.chunk_start_sample(chunk) == g.chunk_start_frame(chunk) * g.samples_per_frame
        assert (
            g.needed_samples(chunk)
            == (g.span_start_frame(chunk) + g.span_frames) * g.samples_per_frame
        )
