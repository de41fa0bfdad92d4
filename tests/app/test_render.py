"""Offline render: the video follows the audio (frame count, durations), turns start at chunk
boundaries with their speaker, and a render can be stopped or cut."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from app.render import RenderStopped, Turn, render
from tests.app.render_doubles import SpyEngine, tone


def test_two_turns_follow_each_other_at_chunk_boundaries(micro_engine):
    """A 16 kHz turn, then a 24 kHz one by the other character: one 24 kHz track, the second
    turn at the first chunk after the first turn's last, and frames exactly to the end."""
    g, fps = micro_engine.geometry, micro_engine.fps
    first, second = tone(0.5, 16000), tone(0.3, 24000, hz=300.0)
    calls = []
    picture = np.full((96, 96, 3), 128, dtype=np.uint8)
    boxes = [(0.0, 0.25, 0.5, 0.75), (0.5, 0.25, 1.0, 0.75)]
    out = render(
        micro_engine,
        picture,
        boxes,
        [Turn(0, first, 16000), Turn(1, second, 24000)],
        progress=lambda done, total: calls.append((done, total)),
    )
    assert out.rate == 24000 and out.fps == fps
    second_chunk = g.chunk_of_frame(math.ceil(0.5 * fps) - 1) + 1
    second_start = g.chunk_start_frame(second_chunk) * 24000 // fps
    end = second_start + len(second)
    assert len(out.frames) == math.ceil(end * fps / 24000)
    assert len(out.audio) == len(out.frames) * 24000 // fps  # padded to the last frame's end
    assert np.array_equal(out.audio[second_start:end], second)
    assert not out.audio[round(0.5 * 24000) + 50 : second_start].any()  # silence between
    assert not out.audio[end:].any()
    assert out.frames.dtype == np.uint8 and out.frames.shape[1:] == (64, 64, 3)
    assert out.frames.std(axis=0).mean() > 1.0  # generated frames move (not one repeated)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and calls[-1] == (len(out.frames), len(out.frames))


def test_render_refuses_a_busy_engine_and_a_speaker_outside_the_scene(micro_engine):
    picture = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="speaker 1 is not one of the 1 characters"):
        render(micro_engine, picture, [(0.2, 0.2, 0.8, 0.8)], [Turn(1, tone(0.5, 16000), 16000)])
    with micro_engine.stream_lock, pytest.raises(RuntimeError, match="streaming for someone"):
        render(micro_engine, picture, [(0.2, 0.2, 0.8, 0.8)], [Turn(0, tone(0.5, 16000), 16000)])


def test_render_stops_when_asked_and_cuts_at_max_seconds(micro_engine):
    picture = np.full((64, 64, 3), 128, dtype=np.uint8)
    box = [(0.2, 0.2, 0.8, 0.8)]
    speech = [Turn(0, tone(1.0, 16000), 16000)]
    cut = render(micro_engine, picture, box, speech, max_seconds=0.2)
    assert len(cut.frames) == round(0.2 * micro_engine.fps) and len(cut.audio) == 3200

    stop, submitted = threading.Event(), []

    def submit_one_then_stop():
        submitted.append(1)
        stop.set()  # as if cancelled while the first chunk renders

    spy = SpyEngine(micro_engine, on_submit=submit_one_then_stop)
    with pytest.raises(RenderStopped, match="the render was stopped"):
        render(spy, picture, box, speech, stop=stop)
    assert len(submitted) == 1  # of 3 chunks
    assert not micro_engine.stream_lock.locked()
