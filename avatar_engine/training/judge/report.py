"""The evaluation's summary: each figure's mean and spread over clips, its target, and a table
with one column per program (the model beside the baselines that must fail)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avatar_engine.training.judge.evaluate import Figures


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    key: str  # its name in the JSON summary
    label: str
    target: str  # "" for a figure reported beside a target, not checked
    values: Callable[[Figures], list[float]]  # per clip (or per portrait, or one value)
    passes: Callable[[float], bool] | None = None  # on the mean


def _clips(key: str) -> Callable[[Figures], list[float]]:
    return lambda f: [c[key] for c in f.clips]


def _over_floor(f: Figures) -> list[float]:
    return [c["identity"] - c["identity_floor"] for c in f.clips]


ROWS = (
    Row("face_found", "face found", ">= 0.99", _clips("face_found"), lambda v: v >= 0.99),
    Row("lipsync", "lip-sync (inner-lip opening vs speech envelope)", ">= 0.5",
        _clips("lipsync"), lambda v: v >= 0.5),
    Row("control_other", "· control: another clip's audio", "", _clips("control_other")),
    Row("control_shifted", "· control: own audio shifted >= 1 s", "", _clips("control_shifted")),
    Row("margin", "· margin over both controls", ">= 0.3", _clips("margin"), lambda v: v >= 0.3),
    Row("lag", "· best lag, frames (median)", "within ±2", _clips("lag"), lambda v: abs(v) <= 2),
    Row("sharpness", "mouth sharpness / reference's", ">= 0.6", _clips("sharpness"),
        lambda v: v >= 0.6),
    Row("sharpness_raw", "· on the raw decoded frames", "", _clips("sharpness_raw")),
    Row("identity", "identity distance", "<= 0.45", _clips("identity"), lambda v: v <= 0.45),
    Row("identity_over_floor", "· over the floor", "<= 0.1", _over_floor, lambda v: v <= 0.1),
    Row("identity_raw", "· on the raw decoded frames", "", _clips("identity_raw")),
    Row("identity_floor", "· floor: the picture through the output size", "",
        _clips("identity_floor")),
    Row("silence", "silence: opening spread listening / speaking", "<= 0.25",
        lambda f: [p["silence"] for p in f.portraits.values()], lambda v: v <= 0.25),
    Row("pair_left", "two characters: left's spread speaking / listening", ">= 3",
        lambda f: [f.pair["left"]], lambda v: v >= 3),
    Row("pair_right", "two characters: right's spread speaking / listening", ">= 3",
        lambda f: [f.pair["right"]], lambda v: v >= 3),
    Row("drift_identity", "drift, last block vs an early one: identity", "within 10%",
        lambda f: [f.drift["identity_change"]] if f.drift else [], lambda v: abs(v) <= 0.1),
    Row("drift_sharpness", "drift, last block vs an early one: sharpness", "within 10%",
        lambda f: [f.drift["sharpness_change"]] if f.drift else [], lambda v: abs(v) <= 0.1),
)  # fmt: skip


def _spread(values: np.ndarray) -> float:
    """Standard deviation over the finite values (0 for fewer than two)."""
    finite = values[np.isfinite(values)]
    return float(np.std(finite)) if len(finite) > 1 else 0.0


def summary(figures: Figures) -> dict[str, dict]:
    """Per row: mean, spread (standard deviation over clips), n, and whether it passes."""
    out = {}
    for row in ROWS:
        values = np.array(row.values(figures), dtype=float)
        mean = float(np.mean(values)) if len(values) else float("nan")
        if row.key == "lag":
            mean = float(np.median(values))  # a lag is a whole number of frames
        out[row.key] = dict(
            mean=mean,
            spread=_spread(values),
            n=len(values),
            target=row.target,
            passes=None if row.passes is None else bool(not math.isnan(mean) and row.passes(mean)),
        )
    return out


def failed(summary_: dict[str, dict]) -> list[str]:
    """The figures whose target is missed (NaN misses)."""
    return [name for name, s in summary_.items() if s["passes"] is False]


def table(summaries: dict[str, dict[str, dict]]) -> str:
    """A Markdown table: one row per figure, one column per program."""
    programs = list(summaries)
    lines = [
        "| figure | target | " + " | ".join(programs) + " |",
        "|---|---|" + "---|" * len(programs),
    ]
    for row in ROWS:
        cells = []
        for program in programs:
            s = summaries[program][row.key]
            mark = {True: " ✓", False: " ✗", None: ""}[s["passes"]]
            spread = f" ± {s['spread']:.2f}" if s["n"] > 1 else ""
            cells.append(f"{s['mean']:.2f}{spread}{mark}")
        lines.append(f"| {row.label} | {row.target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
