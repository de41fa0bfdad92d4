"""`avatar bench engine`: DiT time per chunk against the chunk's duration and a matmul ceiling."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from avatar_engine.cache import kv_cache_bytes
from avatar_engine.canvas import Box, Canvas, Composite, face_windows
from avatar_engine.config import Preset
from avatar_engine.costs import chunk_flops
from avatar_engine.scene import SceneConditioning, face_mask_from_box
from avatar_engine.session import StreamSession
from avatar_engine.vae.reference_decoder import StillPicture
from avatar_engine.weights import random_dit

WINDOW = 11  # chunks per timing window (median taken), centred on the chunk named
WARMUP = 2  # chunks 0 and 1 have their own roles and allocations; not steady state
FACE_BOX = (0.25, 0.1, 0.75, 0.7)  # the benchmark scene's one face, fractions of the frame


@dataclass(frozen=True)
class EngineBench:
    preset: str
    device: str
    dtype: str
    threads: int
    resolution: tuple[int, int]
    chunks: int  # chunks streamed
    chunk_time_s: float  # median DiT time of chunks WARMUP.. (all denoising steps)
    chunk_duration_s: float  # video time one chunk covers
    flops_per_chunk: int
    matmul_ceiling_gflops: float  # measured in the same run, same device and dtype
    kv_cache_bytes: int
    early_chunk: int  # centre of the early timing window
    early_time_s: float  # median over the window, timed alternately with the late window
    late_chunk: int  # centre of the late timing window
    late_time_s: float
    first_chunk_s: float  # chunk 0 (the sink), which also pays for the kernels' first launches

    @property
    def realtime_ratio(self) -> float:
        return self.chunk_time_s / self.chunk_duration_s

    @property
    def achieved_gflops(self) -> float:
        return self.flops_per_chunk / self.chunk_time_s / 1e9

    @property
    def late_vs_early(self) -> float:
        return self.late_time_s / self.early_time_s


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of fn() after one untimed call (the first call of a shape builds its
    kernels)."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_ceiling(
    device: torch.device, dtype: torch.dtype, *, size: int = 1024, seconds: float = 1.0
) -> float:
    """GFLOP/s of square matmuls, the practical peak to compare the DiT against."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    runs, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        a @ b
        runs += 1
        if runs % 8 == 0:
            sync(device)
    sync(device)
    elapsed = time.perf_counter() - start
    return 2 * size**3 * runs / elapsed / 1e9


def bench_faces(characters: int) -> list[Box]:
    """The benchmark scene's face boxes: FACE_BOX alone, or side by side across the frame."""
    if characters == 1:
        return [FACE_BOX]
    _, y0, _, y1 = FACE_BOX
    width = 0.9 / characters
    return [(0.05 + k * width, y0, 0.05 + (k + 0.8) * width, y1) for k in range(characters)]


def bench_inputs(
    preset: Preset, seed: int = 0, *, characters: int = 1
) -> tuple[SceneConditioning, torch.Tensor]:
    """A scene of `characters` faces and one chunk's speech features [1, K, Fc, W, Da], random,
    with the preset's canvas (output size, detail restored): where the output is larger than
    the model's frame, a window per face, as scene_from_image makes them."""
    cfg, stream = preset.dit, preset.stream
    gen = torch.Generator().manual_seed(seed)
    size, model = (stream.output_height, stream.output_width), (stream.height, stream.width)
    boxes = bench_faces(characters)
    per_face = size != model
    batch = characters if per_face else 1
    canvas: Canvas | Composite | None = None
    if stream.restore_detail or per_face:
        picture = torch.randint(0, 256, (1, *size, 3), generator=gen, dtype=torch.uint8)
        canvases = []
        for window, faces in face_windows(size, model, boxes):
            still = torch.rand(1, *model, 3, generator=gen) * 255 if stream.restore_detail else None
            canvases.append(Canvas.of(picture, window, model, still, faces))
        canvas = Composite(tuple(canvases)) if per_face else canvases[0]
    masks = [face_mask_from_box(stream, box) for box in boxes]  # near enough for timing
    face_masks = torch.stack(masks)[:, None] if per_face else torch.stack(masks)[None]
    latent = (batch, cfg.out_dim, stream.latent_h, stream.latent_w)
    scene = SceneConditioning(
        reference_latent=torch.randn(latent, generator=gen),
        face_masks=face_masks,
        context=torch.randn(batch, cfg.text_len, cfg.text_dim, generator=gen),
        image_tokens=None
        if cfg.image_dim is None
        else torch.randn(batch, cfg.image_len, cfg.image_dim, generator=gen),
        canvas=canvas,
        picture=StillPicture(
            torch.randint(0, 256, (batch, *model, 3), generator=gen, dtype=torch.uint8),
            torch.randn(latent, generator=gen),
        ),
        cast=torch.arange(characters)[:, None] if per_face else None,
    )
    shape = (1, characters, stream.chunk_latent_frames, cfg.audio_window_frames,
             cfg.audio_feature_dim)  # fmt: skip
    return scene, torch.randn(shape, generator=gen)


def bench_engine(
    preset: Preset,
    *,
    late_chunk: int = 1000,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    on_chunk: Callable[[int], None] | None = None,
    matmul_ceiling_gflops: float | None = None,
) -> EngineBench:
    """Stream a randomly initialised model to chunk late_chunk + WINDOW/2, timing each chunk.

    Chunk 10 and chunk late_chunk are compared fairly on a noisy machine: a second, fresh
    session is brought to chunk 10 - WINDOW/2, and the two sessions' chunks around 10 and
    around late_chunk are timed alternately, so both windows see the same machine conditions.
    The speaker switches every 5 chunks so both speaking and listening paths run.
    matmul_ceiling_gflops, when given, is a ceiling the caller measured (a GPU needs larger
    matrices than the 1024³ default to reach its peak); otherwise it is measured here.
    """
    half = WINDOW // 2
    early_centre = 10
    if late_chunk < early_centre + WINDOW:
        raise ValueError(f"late_chunk must be at least {early_centre + WINDOW}, got {late_chunk}")
    chunks = late_chunk + half + 1
    dev = torch.device(device)
    cfg, stream = preset.dit, preset.stream
    model = random_dit(cfg, device=dev, dtype=dtype, seed=seed)
    scene, features = bench_inputs(preset, seed)
    features = features.to(dev)
    talking, listening = torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.bool)

    def timed_chunk(session: StreamSession) -> float:
        speaking = talking if (session.chunk_index // 5) % 2 == 0 else listening
        sync(dev)
        start = time.perf_counter()
        session.next_chunk(features, speaking)
        sync(dev)
        return time.perf_counter() - start

    late = StreamSession(model, stream, scene, seed=seed)
    times = []
    for index in range(chunks - WINDOW):
        times.append(timed_chunk(late))
        if on_chunk is not None:
            on_chunk(index)
    early = StreamSession(model, stream, scene, seed=seed)
    while early.chunk_index < early_centre - half:
        timed_chunk(early)
    early_times, late_times = [], []
    for index in range(chunks - WINDOW, chunks):
        early_times.append(timed_chunk(early))
        late_times.append(timed_chunk(late))
        times.append(late_times[-1])
        if on_chunk is not None:
            on_chunk(index)

    return EngineBench(
        preset=preset.name,
        device=str(dev),
        dtype=str(dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
        resolution=(stream.height, stream.width),
        chunks=chunks,
        chunk_time_s=statistics.median(times[WARMUP:]),
        chunk_duration_s=stream.chunk_duration_s,
        flops_per_chunk=chunk_flops(cfg, stream),
        matmul_ceiling_gflops=matmul_ceiling(dev, dtype)
        if matmul_ceiling_gflops is None
        else matmul_ceiling_gflops,
        kv_cache_bytes=kv_cache_bytes(cfg, stream, itemsize=dtype.itemsize),
        early_chunk=early_centre,
        early_time_s=statistics.median(early_times),
        late_chunk=late_chunk,
        late_time_s=statistics.median(late_times),
        first_chunk_s=times[0],
    )
