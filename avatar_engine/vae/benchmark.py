"""VAE time per chunk against the chunk's duration (random weights, one stream).

python -m avatar_engine.vae.benchmark --preset tiny --threads 1 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from avatar_engine.benchmark import matmul_ceiling
from avatar_engine.config import Preset
from avatar_engine.vae.weights import random_vae


@dataclass(frozen=True)
class VAEBench:
    preset: str
    threads: int
    resolution: tuple[int, int]
    chunk_latent_frames: int
    decode_s: float  # median time to decode one steady-state chunk (after the first)
    first_decode_s: float  # median time to decode a stream's first chunk
    encode_image_s: float  # median time to encode one reference image
    chunk_duration_s: float  # video time one chunk covers
    matmul_ceiling_gflops: float  # measured in the same run, fp32, same threads

    @property
    def decode_share(self) -> float:
        """Decode time as a share of the chunk's duration (the real-time budget)."""
        return self.decode_s / self.chunk_duration_s


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # first call of a shape builds the conv kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_vae(preset: Preset, *, threads: int, repeats: int = 20, seed: int = 0) -> VAEBench:
    """Time decoding and encoding on the CPU with `threads` threads."""
    torch.set_num_threads(threads)
    stream, cfg = preset.stream, preset.vae
    vae = random_vae(cfg, device="cpu", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(
        1, cfg.z_dim, stream.chunk_latent_frames, stream.latent_h, stream.latent_w, generator=gen
    )
    image = torch.rand(1, 3, stream.height, stream.width, generator=gen) * 2 - 1
    with torch.inference_mode():
        _, state = vae.decode(z)
        decode_s = _median_time(lambda: vae.decode(z, state), repeats)
        first_decode_s = _median_time(lambda: vae.decode(z), repeats)
        encode_image_s = _median_time(lambda: vae.encode_image(image), repeats)
    return VAEBench(
        preset=preset.name,
        threads=threads,
        resolution=(stream.height, stream.width),
        chunk_latent_frames=stream.chunk_latent_frames,
        decode_s=decode_s,
        first_decode_s=first_decode_s,
        encode_image_s=encode_image_s,
        chunk_duration_s=stream.chunk_duration_s,
        matmul_ceiling_gflops=matmul_ceiling(torch.device("cpu"), torch.float32),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    preset = Preset.from_name(args.preset)
    for threads in args.threads:
        r = bench_vae(preset, threads=threads, repeats=args.repeats)
        print(
            f"{r.preset} {r.resolution[0]}x{r.resolution[1]} threads={r.threads}: "
            f"decode {r.chunk_latent_frames}-latent-frame chunk {r.decode_s * 1e3:.1f} ms "
            f"({r.decode_share:.1%} of its {r.chunk_duration_s * 1e3:.0f} ms), "
            f"first chunk {r.first_decode_s * 1e3:.1f} ms, "
            f"encode image {r.encode_image_s * 1e3:.1f} ms; "
            f"matmul ceiling {r.matmul_ceiling_gflops:.0f} GFLOP/s"
        )


if __name__ == "__main__":
    main()
