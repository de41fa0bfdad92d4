"""The `avatar` command line."""

from __future__ import annotations

import argparse
import sys

from app.eval_cli import add_parsers as add_eval_parsers
from app.render_cli import add_parsers as add_render_parsers
from app.serve import add_parsers as add_serve_parsers
from app.training_cli import add_parsers as add_training_parsers

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _params(n: int) -> str:
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
            f"{s.name:<22}{_params(p.total):>9}{_params(p.trunk):>9}{_params(p.image):>9}"
            f"{_params(p.audio):>9}{f'{s.resolution[0]}x{s.resolution[1]}':>12}"
            f"{s.tokens_per_chunk:>14}{_gib(s.kv_cache_bytes):>12}{s.chunk_flops / 1e12:>13.3f}"
            f"{f'{s.chunk_duration_s:.2f}s':>8}"
        )
    return 0


def cmd_bench_engine(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from avatar_engine.benchmark import WARMUP, WINDOW, bench_engine
    from avatar_engine.config import Preset

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = Preset.from_name(args.preset)
    dtype = getattr(torch, DTYPES[args.dtype])
    total = args.late_chunk + WINDOW // 2 + 1
    with tqdm(total=total, desc=f"{preset.name} chunks", unit="chunk") as bar:
        r = bench_engine(
            preset,
            late_chunk=args.late_chunk,
            device=args.device,
            dtype=dtype,
            on_chunk=lambda _: bar.update(),
        )
    h, w = r.resolution
    print(f"avatar bench engine: {r.preset} {h}x{w}, {r.device} {r.dtype}, {r.threads} threads")
    print(
        f"  DiT time per chunk ({len(preset.stream.denoise_times)} steps): "
        f"{r.chunk_time_s * 1e3:.1f} ms (median of {r.chunks - WARMUP} chunks)"
    )
    print(f"  chunk duration:            {r.chunk_duration_s * 1e3:.1f} ms")
    print(f"  time / duration:           {r.realtime_ratio:.3f}")
    print(f"  FLOPs per chunk:           {r.flops_per_chunk / 1e9:.2f} GFLOP")
    print(f"  achieved:                  {r.achieved_gflops:.1f} GFLOP/s")
    print(
        f"  matmul ceiling (same run): {r.matmul_ceiling_gflops:.1f} GFLOP/s "
        f"-> {r.achieved_gflops / r.matmul_ceiling_gflops:.0%} of ceiling"
    )
    print(f"  KV cache:                  {_gib(r.kv_cache_bytes)}")
    print(
        f"  chunk {r.late_chunk} vs chunk {r.early_chunk}:       "
        f"{r.late_time_s * 1e3:.1f} / {r.early_time_s * 1e3:.1f} ms = {r.late_vs_early:.3f}"
    )
    return 0


def cmd_bench_runtime(args: argparse.Namespace) -> int:
    import os

    import torch
    from tqdm import tqdm

    from avatar_engine.config import Preset
    from avatar_engine.runtime.benchmark import alternate, time_stages
    from avatar_engine.runtime.disaggregated import DisaggregatedRuntime
    from avatar_engine.runtime.local import LocalRuntime
    from avatar_engine.runtime.spec import EngineSpec

    spec = EngineSpec(
        preset=Preset.from_name(args.preset), dtype=getattr(torch, DTYPES[args.dtype])
    )
    stream = spec.preset.stream
    duration = stream.chunk_duration_s
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    print(
        f"avatar bench runtime: {spec.preset.name} {stream.height}x{stream.width} model frames, "
        f"{stream.output_height}x{stream.output_width} output, CPU fp32, "
        f"{cores} cores; starting the runtimes..."
    )
    stages = {}
    for threads in sorted({1, cores}, reverse=True):
        torch.set_num_threads(threads)
        stages[threads] = time_stages(spec, args.chunks, device=args.device)
    torch.set_num_threads(cores)
    local = LocalRuntime(spec, device=args.device)
    layout = dict(dit_ranks=args.dit_ranks, decoder_threads=args.decoder_threads)
    with DisaggregatedRuntime(
        spec, dit_threads=args.dit_threads or None, **layout
    ) as disaggregated:
        runtimes = {"single process": local, "disaggregated": disaggregated}
        total = args.rounds * len(runtimes) * (args.chunks - 1)
        with tqdm(total=total, desc="chunks", unit="chunk") as bar:
            times = alternate(
                runtimes, spec, chunks=args.chunks, rounds=args.rounds, on_chunk=bar.update
            )
        layout = disaggregated.settings
    print(f"  chunk duration: {duration * 1e3:.0f} ms ({stream.video_frames_per_chunk} frames)")
    for threads, st in stages.items():
        features = "n/a" if st.features_s is None else f"{st.features_s * 1e3:.1f} ms"
        print(
            f"  in-process stages, {threads} thread(s): speech features {features}, "
            f"DiT {st.dit_s * 1e3:.1f} ms, decode + RGB {st.decode_s * 1e3:.1f} ms, "
            f"canvas {st.canvas_s * 1e3:.1f} ms per chunk; "
            f"sum / chunk duration {st.total_s / duration:.3f}"
        )
    print(
        f"  disaggregated: {layout.dit_ranks} DiT rank(s) x {layout.dit_threads} thread(s), "
        f"decoder x {layout.decoder_threads} thread(s), {layout.backend}"
    )
    print(f"  {'runtime':<16}{'TTBC':>10}{'TTBC/chunk':>12}{'first chunk':>13}")
    for name, t in times.items():
        print(
            f"  {name:<16}{t.ttbc_s * 1e3:>8.1f}ms{t.ttbc_s / duration:>12.3f}"
            f"{t.first_chunk_s * 1e3:>11.0f}ms"
        )
    ratio = times["disaggregated"].ttbc_s / times["single process"].ttbc_s
    print(
        f"  disaggregated / single process TTBC: {ratio:.3f} "
        f"(medians of {args.rounds} alternating rounds of {args.chunks} chunks)"
    )
    return 0


def cmd_bench_vae(args: argparse.Namespace) -> int:
    import torch

    from avatar_engine.config import Preset
    from avatar_engine.vae.benchmark import bench_vae

    preset = Preset.from_name(args.preset)
    dtype = getattr(torch, DTYPES[args.dtype])
    for threads in args.threads:
        r = bench_vae(preset, threads=threads, device=args.device, dtype=dtype)
        h, w = r.resolution
        print(
            f"avatar bench vae: {r.preset} VAE {h}x{w}, {r.device} {r.dtype}, {r.threads} threads: "
            f"decode a {r.chunk_latent_frames}-latent-frame chunk {r.decode_s * 1e3:.1f} ms "
            f"({r.decode_share:.3f} of its {r.chunk_duration_s * 1e3:.0f} ms), "
            f"first chunk {r.first_decode_s * 1e3:.1f} ms, "
            f"encode image {r.encode_image_s * 1e3:.1f} ms; "
            f"matmul ceiling {r.matmul_ceiling_gflops:.0f} GFLOP/s"
        )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.worker import WorkerSettings, run_worker

    settings = WorkerSettings(
        sessions=args.sessions, device=args.device, runtime=args.runtime, data=args.data
    )
    run_worker(args.livekit_args, settings=settings)
    return 0  # livekit's CLI exits the process itself


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print presets with parameter counts and costs")
    info.add_argument("--dtype", choices=DTYPES, default="bf16", help="dtype for KV-cache bytes")
    info.set_defaults(func=cmd_info)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    engine = bench_sub.add_parser("engine", help="DiT time per chunk vs real time")
    engine.add_argument("--preset", default="tiny")
    engine.add_argument(
        "--late-chunk",
        type=int,
        default=1000,
        help="stream this far and compare the time per chunk here with chunk 10",
    )
    engine.add_argument("--device", default="cpu")
    engine.add_argument("--dtype", choices=DTYPES, default="fp32")
    engine.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    engine.set_defaults(func=cmd_bench_engine)
    runtime = bench_sub.add_parser(
        "runtime", help="end-to-end time between chunks: single process vs disaggregated"
    )
    runtime.add_argument("--preset", default="tiny")
    runtime.add_argument("--chunks", type=int, default=24, help="chunks per session")
    runtime.add_argument("--rounds", type=int, default=3, help="alternating sessions per runtime")
    runtime.add_argument("--dit-ranks", type=int, default=1, help="sequence-parallel DiT ranks")
    runtime.add_argument(
        "--dit-threads", type=int, default=0, help="threads per DiT rank (0: the cores left)"
    )
    runtime.add_argument("--decoder-threads", type=int, default=1)
    runtime.add_argument("--device", default="cpu", help="of the single-process runtime")
    runtime.add_argument("--dtype", choices=DTYPES, default="fp32")
    runtime.set_defaults(func=cmd_bench_runtime)
    vae = bench_sub.add_parser("vae", help="VAE decode and encode time per chunk")
    vae.add_argument("--preset", default="tiny", help="the preset's VAE at its resolution")
    vae.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    vae.add_argument("--device", default="cpu")
    vae.add_argument("--dtype", choices=DTYPES, default="fp32")
    vae.set_defaults(func=cmd_bench_vae)
    add_serve_parsers(sub)
    add_render_parsers(sub)
    add_training_parsers(sub)
    add_eval_parsers(sub)

    worker = sub.add_parser(
        "worker",
        help="run a LiveKit Agents worker that joins rooms as the avatar",
        description="Run a LiveKit Agents worker (needs LIVEKIT_URL, LIVEKIT_API_KEY and "
        "LIVEKIT_API_SECRET). What follows the options goes to livekit's CLI: start (the "
        "default), dev, or connect --room NAME; put --help after one for its options.",
    )
    worker.add_argument(
        "--sessions", type=int, default=1, help="conversations this worker runs at once"
    )
    worker.add_argument("--device", default="cpu", help="the engine's device, e.g. cuda")
    worker.add_argument("--runtime", choices=("local", "disaggregated"), default="local")
    worker.add_argument(
        "--data", metavar="DIR", help="the console's library (default: $AVATAR_DATA or XDG)"
    )
    worker.add_argument(
        "livekit_args", nargs=argparse.REMAINDER, metavar="start|dev|connect ...",
        help="livekit CLI command and options",
    )  # fmt: skip
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"avatar: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
