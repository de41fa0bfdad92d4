"""`avatar train ...` and `avatar eval-teacher`: the embedded model's training stages, and a
teacher's figures before distilling."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from avatar_engine.config import Preset
    from avatar_engine.training.teacher import Speaker
    from avatar_engine.vae.model import WanVAE

DEFAULT_RUNS = Path("runs")
GUIDE_MOUTHS_HELP = "speech guidance on the mouths only; elsewhere the plain ODE"


def _preset() -> Preset:
    from avatar_engine.config import Preset
    from avatar_engine.embedded import EMBEDDED_PRESET

    return Preset.from_name(EMBEDDED_PRESET)


def _vae(run: Path) -> WanVAE:
    import torch

    from avatar_engine.training.loop import load_trained
    from avatar_engine.vae.weights import random_vae

    vae = random_vae(_preset().vae, device="cpu", dtype=torch.float32)
    return cast("WanVAE", load_trained(run, "vae", vae))


def _speaker(run: Path, name: str) -> Speaker:
    from avatar_engine.training.loop import load_trained
    from avatar_engine.training.teacher import new_speaker

    return cast("Speaker", load_trained(run, name, new_speaker(_preset(), seed=0)))


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    run = args.run or DEFAULT_RUNS / args.stage
    common = dict(steps=args.steps, seed=args.seed, pool_size=args.pool)
    if args.batch:
        common["batch"] = args.batch
    if args.lr:
        common["lr"] = args.lr
    if args.stage == "vae":
        from avatar_engine.training.vae import latent_statistics, train_vae

        vae = train_vae(
            _preset(),
            run,
            init_from=args.init,
            decoder_only=args.decoder_only,
            window_frames=args.window,
            crop=args.crop,
            mouth_crops=args.mouth_crops,
            long_window=args.long_window,
            **common,
        )
        mean, std = latent_statistics(vae, _preset())
        (run / "latent_stats.json").write_text(json.dumps({"mean": mean, "std": std}))
        print("latent statistics (TINY_VAE_LATENT_MEAN/STD in avatar_engine/config.py):")
        print(f"  mean {[round(v, 4) for v in mean]}\n  std  {[round(v, 4) for v in std]}")
    elif args.stage == "decoder":
        from avatar_engine.training.decoder import train_decoder

        train_decoder(_preset(), _vae(args.vae), run, init_from=args.init, **common)
    elif args.stage == "teacher":
        from avatar_engine.training.teacher import train_teacher

        init = None if args.init is None else _speaker(args.init, "teacher")
        train_teacher(_preset(), _vae(args.vae), run, chunks=args.chunks, init=init, **common)
    else:
        from avatar_engine.training.data.clips import kind_weights
        from avatar_engine.training.distill import train_student

        teacher = None if args.from_data else _speaker(args.teacher, "teacher")
        train_student(
            _preset(),
            _vae(args.vae),
            teacher,
            run,
            dmd_weight=args.dmd_weight,
            guidance=args.guidance,
            mouths_only=args.guide_mouths,
            chunks=args.chunks,
            init=None if args.init is None else _speaker(args.init, "student"),
            kind_weights=kind_weights(args.pair_share),
            even_mouths=args.even_mouths,
            **common,
        )
    print(f"checkpoint: {run}/checkpoint.pt, losses: {run}/log.jsonl")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from avatar_engine.embedded import EmbeddedModel

    student = _speaker(args.student, "student")
    model = EmbeddedModel(Path(args.out))
    reference_decoder = None
    if args.decoder is not None:
        from avatar_engine.training.loop import load_trained
        from avatar_engine.vae.reference_decoder import ReferenceDecoder

        reference_decoder = load_trained(args.decoder, "decoder", ReferenceDecoder(_preset().vae))
    model.save(
        dit=student.dit,
        vae=_vae(args.vae),
        encoder=student.encoder,
        reference_decoder=reference_decoder,
    )
    files = (model.dit, model.vae, model.audio, model.reference_decoder)
    size = sum(p.stat().st_size for p in files if p.is_file())
    print(f"wrote {model.directory} ({size / 2**20:.1f} MiB)")
    return 0


def cmd_eval_teacher(args: argparse.Namespace) -> int:
    import torch

    from avatar_engine.training.teacher_check import teacher_speech

    if args.threads:
        torch.set_num_threads(args.threads)
    teacher, vae = _speaker(args.teacher, "teacher").eval(), _vae(args.vae).eval()
    figures = teacher_speech(
        teacher, vae, _preset(), args.guidance, clips=args.clips, mouths_only=args.guide_mouths
    )
    print(json.dumps({f"guidance {g:g}": f for g, f in figures.items()}, indent=2))
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from avatar_engine.training.curves import plot_runs

    plot_runs(args.runs, args.out, smooth=args.smooth)
    print(f"wrote {args.out}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train the embedded model's stages (resumable)")
    train.add_argument("stage", choices=("vae", "decoder", "teacher", "student"))
    train.add_argument("--run", type=Path, help="run directory (default runs/STAGE)")
    train.add_argument(
        "--steps", type=int, required=True, help="total steps (resumes if fewer ran)"
    )
    train.add_argument(
        "--batch", type=int, default=0, help="clips per step (0: the stage's default)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--pool", type=int, default=200, help="clips kept in memory")
    train.add_argument("--chunks", type=int, default=7, help="chunks per clip (DiT stages)")
    train.add_argument("--vae", type=Path, default=DEFAULT_RUNS / "vae", help="VAE run")
    train.add_argument("--teacher", type=Path, default=DEFAULT_RUNS / "teacher")
    train.add_argument("--dmd-weight", type=float, default=0.0, help="0: ODE regression only")
    train.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        help="student: speech guidance of the teacher's ODE (with --from-data, of the clips)",
    )
    train.add_argument("--threads", type=int, default=0)
    train.add_argument("--guide-mouths", action="store_true", help=GUIDE_MOUTHS_HELP)
    train.add_argument(
        "--from-data",
        action="store_true",
        help="student: regress the clips' own latents, not a teacher's ODE (needs --init)",
    )
    train.add_argument(
        "--pair-share",
        type=float,
        default=0.3,
        help="student: the share of clips with two characters (the rest keep their ratio)",
    )
    train.add_argument(
        "--even-mouths",
        action="store_true",
        help="student: a small mouth (a pair's) weighs as much in the loss as a large one",
    )
    train.add_argument(
        "--init",
        type=Path,
        help="start from this run of the same stage (VAE, decoder, teacher or student)",
    )
    train.add_argument(
        "--window", type=int, default=5, help="vae: frames per training window (1 + 4n)"
    )
    train.add_argument("--crop", type=int, default=64, help="vae: crop side, pixels")
    train.add_argument(
        "--mouth-crops", type=float, default=0.5, help="vae: share of crops centred on a mouth"
    )
    train.add_argument(
        "--long-window",
        type=int,
        default=0,
        help="vae: every other step a window this long on 32x32 crops (the steady state)",
    )
    train.add_argument("--lr", type=float, default=0.0, help="peak learning rate (0: default)")
    train.add_argument(
        "--decoder-only", action="store_true", help="vae: keep the encoder (the latent space)"
    )
    train.set_defaults(func=cmd_train)
    export = sub.add_parser("export", help="write a trained student + VAE as the embedded model")
    export.add_argument("--student", type=Path, default=DEFAULT_RUNS / "student")
    export.add_argument("--vae", type=Path, default=DEFAULT_RUNS / "vae")
    export.add_argument(
        "--decoder",
        type=Path,
        help="a reference decoder run (avatar train decoder); none: the VAE's",
    )
    export.add_argument("-o", "--out", default="assets/models/tiny")
    export.set_defaults(func=cmd_export)
    check = sub.add_parser(
        "eval-teacher",
        help="lip-sync, silence and identity figures of a teacher's ODE, per speech guidance",
    )
    check.add_argument("--teacher", type=Path, default=DEFAULT_RUNS / "teacher")
    check.add_argument("--vae", type=Path, default=DEFAULT_RUNS / "vae")
    check.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0])
    check.add_argument("--clips", type=int, default=4, help="held-out clips")
    check.add_argument("--threads", type=int, default=0)
    check.add_argument("--guide-mouths", action="store_true", help=GUIDE_MOUTHS_HELP)
    check.set_defaults(func=cmd_eval_teacher)
    curves = sub.add_parser("curves", help="plot training runs' losses into one PNG")
    curves.add_argument("runs", type=Path, nargs="+", help="run directories (runs/STAGE)")
    curves.add_argument("-o", "--out", type=Path, required=True, help="the PNG to write")
    curves.add_argument("--smooth", type=int, default=25, help="moving average, in steps")
    curves.set_defaults(func=cmd_curves)
