"""The inside of an open mouth: nothing while closed; a dark cavity, the upper teeth under the
upper lip and the tongue low down when open; narrower when rounded."""

from __future__ import annotations

import pytest
import torch

from avatar_engine.training.data.mouth import (
    ROUNDED_WIDTH,
    UPPER_SHARE,
    MouthLook,
    draw_inside,
    lip_gap,
)

SIZE = 200
MOUTH = (0.5, 0.5, 0.15)  # centre x, lip line y, half width
SKIN = torch.tensor((0.85, 0.65, 0.55))


def grid() -> tuple[torch.Tensor, torch.Tensor]:
    c = (torch.arange(SIZE, dtype=torch.float32) + 0.5) / SIZE
    return c[:, None].expand(SIZE, SIZE), c[None, :].expand(SIZE, SIZE)


SHOWING = MouthLook(teeth=1.0, tongue=1.0)


def drawn(opening: float, rounding: float = 0.0, look: MouthLook = SHOWING):
    frame = SKIN.expand(SIZE, SIZE, 3).clone()
    y, x = grid()
    draw_inside(frame, y, x, MOUTH, lip_gap(opening, 0.12), rounding, look, 1 / SIZE)
    return frame


def test_a_closed_mouth_draws_nothing():
    assert torch.equal(drawn(0.0), SKIN.expand(SIZE, SIZE, 3))


def test_the_gap_parts_mostly_downwards():
    lift, drop = lip_gap(1.0, 0.12)
    assert lift == pytest.approx(UPPER_SHARE * 0.12) and lift + drop == pytest.approx(0.12)


def test_an_open_mouth_shows_teeth_on_top_cavity_in_the_middle_tongue_below():
    frame = drawn(1.0)
    lift, drop = lip_gap(1.0, 0.12)
    col = SIZE // 2
    top, bottom = round((0.5 - lift) * SIZE), round((0.5 + drop) * SIZE)
    centre = (top + bottom) // 2
    brightness = frame[:, col].mean(dim=-1)  # down the middle
    assert brightness[top + 2] > 0.8  # the upper teeth
    assert brightness[centre] < 0.25  # the dark inside
    tongue = frame[bottom - 3, col]
    assert tongue[0] > tongue[1] + 0.15  # red, low in the mouth
    assert torch.equal(frame[top - 3], SKIN.expand(SIZE, 3))  # above the gap: untouched
    assert torch.equal(frame[:, round(0.5 * SIZE + 0.16 * SIZE)], SKIN.expand(SIZE, 3))


def test_rounding_narrows_the_opening():
    def width(frame: torch.Tensor) -> int:
        row = frame[round((0.5 + 0.04) * SIZE)]  # across the gap's middle
        return int(((row - SKIN).abs().sum(dim=-1) > 0.1).sum())

    wide, rounded = width(drawn(1.0)), width(drawn(1.0, rounding=1.0))
    assert rounded == pytest.approx(ROUNDED_WIDTH * wide, rel=0.15)
