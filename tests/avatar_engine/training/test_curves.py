"""Loss curves from training logs."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from avatar_engine.training.curves import plot_runs, run_losses
from avatar_engine.training.loop import LOG


def write_log(run, rows) -> None:
    run.mkdir()
    (run / LOG).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_redone_step_keeps_its_last_value(tmp_path):
    # stopped after step 3 with the checkpoint at 2: step 3 is done again
    rows = [{"step": s, "seconds": 1.0, "loss": v} for s, v in ((1, 4.0), (2, 3.0), (3, 9.0))]
    write_log(tmp_path / "run", [*rows, {"step": 3, "seconds": 1.0, "loss": 2.0}])
    steps, values = run_losses(tmp_path / "run")["loss"]
    assert steps.tolist() == [1, 2, 3] and values.tolist() == [4.0, 3.0, 2.0]


def test_every_run_gets_a_panel_in_one_png(tmp_path):
    for name in ("teacher", "student"):
        losses = np.exp(-np.arange(60) / 20)
        write_log(tmp_path / name, [{"step": i + 1, "seconds": 0.5, "loss": float(v), "psnr": 20}
                                    for i, v in enumerate(losses)])  # fmt: skip
    out = tmp_path / "curves" / "losses.png"
    plot_runs([tmp_path / "teacher", tmp_path / "student"], out, smooth=5)
    with Image.open(out) as image:
        assert image.width > image.height > 100  # two panels side by side
