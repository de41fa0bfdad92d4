"""`avatar bench vae`: VAE time per chunk against the chunk's duration (random weights)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatar_engine.benchmark import matmul_ceiling, median_time
from avatar_engine.config import Preset
from avatar_engine.vae.weights import random_vae


@dataclass(frozen=True)
class VAEBench:
    preset: str
    device: str
    dtype: str
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


def bench_vae(
    preset: Preset,
    *,
    threads: int,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 20,
    seed: int = 0,
) -> VAEBench:
    """Time decoding and encoding with `threads` CPU threads (on the CPU or a GPU)."""
    torch.set_num_threads(threads)
    stream, cfg, dev = preset.stream, preset.vae, torch.device(device)
    vae = random_vae(cfg, device=dev, dtype=dtype, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(
        1, cfg.z_dim, stream.chunk_latent_frames, stream.latent_h, stream.latent_w, generator=gen
    ).to(dev, dtype)
    image = (torch.rand(1, 3, stream.height, stream.width, generator=gen) * 2 - 1).to(dev, dtype)
    with torch.inference_mode():
        _, state = vae.decode(z)
        decode_s = median_time(lambda: vae.decode(z, state), repeats, dev)
        first_decode_s = median_time(lambda: vae.decode(z), repeats, dev)
        encode_image_s = median_time(lambda: vae.encode_image(image), repeats, dev)
    return VAEBench(
        preset=preset.name,
        device=str(dev),
        dtype=str(dtype).removeprefix("torch."),
        threads=threads,
        resolution=(stream.height, stream.width),
        chunk_latent_frames=stream.chunk_latent_frames,
        decode_s=decode_s,
        first_decode_s=first_decode_s,
        encode_image_s=encode_image_s,
        chunk_duration_s=stream.chunk_duration_s,
        matmul_ceiling_gflops=matmul_ceiling(dev, dtype),
    )
