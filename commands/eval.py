"""`avatar eval`: the model card's judge. The embedded model and three baselines that must fail
render the same clips of a pool; an independent face analyser (dlib, the `eval` extra) measures
them; a table, a JSON file of every figure, and mp4s and frame strips as evidence."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from app.media import save_frames, write_mp4
    from avatar_engine.audio.geometry import FrameGeometry
    from avatar_engine.embedded import EmbeddedModel
    from avatar_engine.training.judge.evaluate import Evaluation
    from avatar_engine.training.judge.pools import POOLS
    from avatar_engine.training.judge.programs import BASELINES, Baseline, ModelProgram, Program
    from avatar_engine.training.judge.report import failed, summary, table

    if args.threads:
        torch.set_num_threads(args.threads)
    model_program = ModelProgram.of_model(EmbeddedModel(Path(args.model)).check())
    preset, encoder = model_program.preset, model_program.encoder
    geometry = FrameGeometry.of_preset(preset)
    print(f"pool {args.pool}: preparing the references and the voices")
    evaluation = Evaluation(
        POOLS[args.pool], preset.stream.output_height, preset.stream.fps, geometry.samples_per_frame
    )
    programs: list[Program] = [model_program]
    programs += [Baseline(kind, encoder, preset) for kind in BASELINES]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    everything, summaries = {}, {}
    path = Path(args.json) if args.json else out / "report.json"
    for program in programs:
        figures, evidence = evaluation.run(program, drift_minutes=args.minutes)
        everything[program.name] = asdict(figures)
        summaries[program.name] = summary(figures)
        if program.name == "model":
            for name, video in evidence.items():
                write_mp4(out / f"{name}.mp4", video.frames, preset.stream.fps, video.audio,
                          geometry.sample_rate)  # fmt: skip
                save_frames(out / f"{name}.png", video.frames, count=8)
        report = {
            "model": str(args.model),
            "pool": args.pool,
            "portraits": [s.name for s in evaluation.pool.portraits],
            "voices": evaluation.labels,
            "drift_minutes": args.minutes,
            "summary": summaries,
            "figures": everything,
        }  # written after each program: an hour's figures survive a later failure
        path.write_text(json.dumps(report, indent=1, default=float))
    print(table(summaries))
    missed = failed(summaries["model"])
    print(f"model misses: {', '.join(missed) if missed else 'nothing'}")
    for name in BASELINES:
        print(f"baseline {name} misses: {', '.join(failed(summaries[name])) or 'NOTHING (a bug)'}")
    print(f"figures: {path}; videos and frames: {out}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    evaluation = sub.add_parser(
        "eval",
        help="judge the embedded model with an independent face analyser, beside baselines",
    )
    evaluation.add_argument("--model", default="assets/models/tiny")
    evaluation.add_argument(
        "--pool", choices=("dev", "test"), default="dev",
        help="dev for choosing settings; test for the model card, once per shipped model",
    )  # fmt: skip
    evaluation.add_argument("--out", default="runs/eval", help="videos and frame strips")
    evaluation.add_argument(
        "--json", help="every figure, per clip and summary (default OUT/report.json)"
    )
    evaluation.add_argument("--minutes", type=float, default=10.0, help="drift stream length")
    evaluation.add_argument("--threads", type=int, default=0)
    evaluation.set_defaults(func=cmd_eval)
