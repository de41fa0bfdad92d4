"""Loss curves of training runs as one PNG (the model card's evidence), from their logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar_engine.training.loop import read_log

NOT_LOSSES = {"step", "seconds", "psnr"}


def run_losses(run_dir: Path | str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each logged loss as (steps, values). A step logged twice (a run stopped between two
    checkpoints redoes it) keeps its last value, the one the checkpoints descend from."""
    rows = {row["step"]: row for row in read_log(run_dir)}
    steps = np.array(sorted(rows))
    keys = [k for k in rows[steps[0]] if k not in NOT_LOSSES]
    return {k: (steps, np.array([rows[s][k] for s in steps])) for k in keys}


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_runs(runs: list[Path], out: Path, *, smooth: int = 25) -> None:
    """One panel per run, every loss on a log scale, smoothed over `smooth` steps."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        for key, (steps, values) in run_losses(run).items():
            ax.plot(steps[: len(steps) - min(smooth, len(steps)) + 1],
                    moving_average(values, smooth), label=key)  # fmt: skip
        ax.set_yscale("log")
        ax.set_title(Path(run).name)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
