"""The `avatar` command line: the composition root, the one package that imports every other
(avatar_engine, llm_bridge, app and web), each command's modules imported when it runs."""

from __future__ import annotations

import argparse
import sys

from commands.bench import DTYPES, gib
from commands.bench import add_parsers as add_bench_parsers
from commands.eval import add_parsers as add_eval_parsers
from commands.render import add_parsers as add_render_parsers
from commands.serve import add_parsers as add_serve_parsers
from commands.train import add_parsers as add_training_parsers
from commands.worker import add_parsers as add_worker_parsers


def params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from avatar_engine.config import PRESETS
    from avatar_engine.costs import summarize

    dtype = getattr(torch, DTYPES[args.dtype])
    header = (
        f"{'preset':<22}{'total':>9}{'trunk':>9}{'(image)':>9}{'audio':>9}{'resolution':>12}"
        f"{'tokens/chunk':>14}{'KV cache':>12}{'TFLOP/chunk':>13}{'chunk':>8}"
    )
    print(f"Presets (KV cache in {args.dtype}; FLOPs for one steady-state chunk, all steps)")
    print(header)
    for preset in PRESETS.values():
        s = summarize(preset, dtype=dtype)
        p = s.params
        print(
            f"{s.name:<22}{params(p.total):>9}{params(p.trunk):>9}{params(p.image):>9}"
            f"{params(p.audio):>9}{f'{s.resolution[0]}x{s.resolution[1]}':>12}"
            f"{s.tokens_per_chunk:>14}{gib(s.kv_cache_bytes):>12}{s.chunk_flops / 1e12:>13.3f}"
            f"{f'{s.chunk_duration_s:.2f}s':>8}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print presets with parameter counts and costs")
    info.add_argument("--dtype", choices=DTYPES, default="bf16", help="dtype for KV-cache bytes")
    info.set_defaults(func=cmd_info)
    add_bench_parsers(sub)
    add_serve_parsers(sub)
    add_render_parsers(sub)
    add_training_parsers(sub)
    add_eval_parsers(sub)
    add_worker_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ValueError as err:
        print(f"avatar: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
