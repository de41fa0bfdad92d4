"""`avatar bench`: the engine's DiT, the runtimes end to end, and the VAE, timed."""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


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
    print(f"  KV cache:                  {gib(r.kv_cache_bytes)}")
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
    from avatar_engine.embedded import EmbeddedModel
    from avatar_engine.runtime.benchmark import alternate, time_stages
    from avatar_engine.runtime.disaggregated import DisaggregatedRuntime
    from avatar_engine.runtime.local import LocalRuntime
    from avatar_engine.runtime.spec import EngineSpec

    dtype = getattr(torch, DTYPES[args.dtype])
    if args.model is not None:
        spec = EmbeddedModel(args.model).spec(dtype=dtype)
    else:
        spec = EngineSpec(preset=Preset.from_name(args.preset), dtype=dtype)
    stream = spec.preset.stream
    duration = stream.chunk_duration_s
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    frames_by = "reference decoder" if spec.reference_decoder_weights else "VAE decoder"
    print(
        f"avatar bench runtime: {spec.preset.name} {stream.height}x{stream.width} model frames, "
        f"{stream.output_height}x{stream.output_width} output, {args.characters} face(s), "
        f"frames by the {frames_by}, "
        f"CPU {args.dtype}, {cores} cores; starting the runtimes..."
    )
    stages = {}
    for threads in sorted({1, cores}, reverse=True):
        torch.set_num_threads(threads)
        stages[threads] = time_stages(
            spec, args.chunks, device=args.device, characters=args.characters
        )
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
                runtimes,
                spec,
                chunks=args.chunks,
                rounds=args.rounds,
                on_chunk=bar.update,
                characters=args.characters,
            )
        ranks = disaggregated.settings
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
        f"  disaggregated: {ranks.dit_ranks} DiT rank(s) x {ranks.dit_threads} thread(s), "
        f"decoder x {ranks.decoder_threads} thread(s), {ranks.backend}"
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    runtime.add_argument("--preset", default="tiny", help="with random weights (no --model)")
    runtime.add_argument(
        "--model",
        type=Path,
        help="an exported embedded model (assets/models/tiny): its weights and decoder",
    )
    runtime.add_argument("--chunks", type=int, default=24, help="chunks per session")
    runtime.add_argument(
        "--characters",
        type=int,
        default=1,
        help="faces in the scene, side by side; each has a window of its own to draw",
    )
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
