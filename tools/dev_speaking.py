"""The evaluation's dev pool, the model alone: its speaking clips and each portrait listening,
judged as `avatar eval` judges them, in a few minutes instead of twelve (no baselines, no pair,
no drift). With --parted, each portrait's lips are first parted at rest by the training data's
warp (motion.animate, with the mouth's inside drawn): a smile or a half-open mouth, as many
photographs show one, from which the model has to close the mouth as well as open it.

    .venv/bin/python tools/dev_speaking.py --model assets/models/tiny runs/model25
    .venv/bin/python tools/dev_speaking.py --parted 0.5 --model assets/models/tiny

Needs the eval extra (dlib). Never the test pool.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.embedded import EmbeddedModel
from avatar_engine.framing import Portrait
from avatar_engine.training.data.motion import MotionTrack, animate
from avatar_engine.training.data.mouth import MouthLook
from avatar_engine.training.judge.evaluate import Evaluation, Figures
from avatar_engine.training.judge.pools import DEV, Drawn, Photo, Pool
from avatar_engine.training.judge.programs import ModelProgram

PARTED_LOOK = MouthLook(teeth=0.7, tongue=0.3)


@dataclass(frozen=True)
class Parted:
    """A pool's portrait with its lips parted at rest by `opening` (of a full opening)."""

    source: Photo | Drawn
    opening: float

    @property
    def name(self) -> str:
        return self.source.name

    def portrait(self, size: int) -> Portrait:
        p = self.source.portrait(size)
        still = MotionTrack(np.array([self.opening]), np.zeros(1), np.zeros(1), np.zeros((1, 2)),
                            PARTED_LOOK)  # fmt: skip
        return replace(p, image=animate(p.image, [p], [still])[0])


def judge(model_dir: Path, pool: Pool) -> Figures:
    program = ModelProgram.of_model(EmbeddedModel(model_dir).check())
    preset = program.preset
    samples_per_frame = FrameGeometry.of_preset(preset).samples_per_frame
    evaluation = Evaluation(pool, preset.stream.output_height, preset.stream.fps, samples_per_frame)
    figures = Figures("model")
    evaluation.speaking_clips(program, figures, progress=True)
    evaluation.silence(program, figures, progress=True)
    return figures


def report(name: str, figures: Figures) -> None:
    def mean(key: str, clips: list[dict]) -> float:
        return float(np.mean([c[key] for c in clips]))

    silence = [p["silence"] for p in figures.portraits.values()]
    print(f"{name}: lip-sync {mean('lipsync', figures.clips):.2f}  margin "
          f"{mean('margin', figures.clips):.2f}  identity {mean('identity', figures.clips):.3f}  "
          f"silence {np.mean(silence):.2f}")  # fmt: skip
    for portrait, seen in figures.portraits.items():
        clips = [c for c in figures.clips if c["portrait"] == portrait]
        print(f"  {portrait:10s} lip-sync {mean('lipsync', clips):5.2f}  margin "
              f"{mean('margin', clips):5.2f}  spread {mean('speaking_spread', clips):.3f}  "
              f"silence {seen['silence']:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", type=Path, default=[Path("assets/models/tiny")])
    parser.add_argument(
        "--parted", type=float, default=0.0, help="part each portrait's lips by this much (0-1)"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pool = DEV
    if args.parted > 0:
        pool = replace(DEV, portraits=tuple(Parted(s, args.parted) for s in DEV.portraits))
    for model_dir in args.model:
        report(f"{model_dir} (dev pool{f', lips parted {args.parted}' if args.parted else ''})",
               judge(model_dir, pool))  # fmt: skip


if __name__ == "__main__":
    main()
