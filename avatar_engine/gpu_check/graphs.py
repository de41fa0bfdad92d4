"""Whether one chunk's DiT forwards (every denoising step, steady state) can run as a captured
CUDA graph or a torch.compile'd function, what that gains over eager, and whether the result
is the same. The eager figures are taken first, so a failed capture still reports them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from avatar_engine.benchmark import bench_inputs, median_time
from avatar_engine.config import PRESETS
from avatar_engine.gpu_check.measure import peak_memory, reset_peak_memory
from avatar_engine.gpu_check.runner import Skip
from avatar_engine.gpu_check.settings import CheckSettings
from avatar_engine.model.audio import AudioConditioning
from avatar_engine.model.window import ChunkRole, StreamingWindow
from avatar_engine.session import StreamSession
from avatar_engine.weights import random_dit

log = logging.getLogger("gpu_check")
STEADY_AFTER = 3  # chunks 0 and 1 have their own roles; chunk 2 is the first steady one


@dataclass
class SteadyChunk:
    """A stream brought to steady state, and its chunk's DiT forwards on fixed inputs."""

    session: StreamSession
    forward: Callable[[int], torch.Tensor]  # denoising step -> [B, z, Fc, h, w] network output
    steps: int

    def run(self) -> list[torch.Tensor]:
        """All steps of one chunk (each reads and advances its own step's caches)."""
        return [self.forward(step) for step in range(self.steps)]

    def snapshot(self) -> torch.Tensor:
        return self.session.cache.storage.clone()

    def restore(self, snapshot: torch.Tensor) -> None:
        self.session.cache.storage.copy_(snapshot)


def steady_chunk(settings: CheckSettings, name: str) -> SteadyChunk:
    preset = PRESETS[name]
    stream, dev = preset.stream, settings.torch_device
    model = random_dit(preset.dit, device=dev, dtype=settings.torch_dtype, seed=settings.seed)
    scene, features = bench_inputs(preset, settings.seed)
    session = StreamSession(model, stream, scene, seed=settings.seed)
    features, talking = features.to(dev), torch.ones(1, 1, dtype=torch.bool, device=dev)
    for _ in range(STEADY_AFTER):
        session.next_chunk(features, talking)
    frames = stream.chunk_latent_frames
    with torch.inference_mode():
        audio = model.audio_context(
            AudioConditioning(
                features=features,
                speaking=talking[:, :, None].expand(-1, -1, frames),
                face_masks=session.face_masks,
            )
        )
        gen = torch.Generator(device=dev).manual_seed(settings.seed)
        inputs = [
            torch.randn(session.latent_shape, device=dev, generator=gen)
            for _ in range(stream.num_steps)
        ]  # fixed x_t per step: a graph's inputs live at fixed addresses
    windows = [
        StreamingWindow(ChunkRole.STEADY, session.slots, session.cache.steps[step])
        for step in range(stream.num_steps)
    ]

    def forward(step: int) -> torch.Tensor:
        return model.forward_chunk(
            inputs[step],
            session.cond_rest,
            session.timesteps[step],
            context_kv=session.context_kv,
            audio=audio,
            window=windows[step],
        )

    return SteadyChunk(session=session, forward=forward, steps=stream.num_steps)


def _relative_error(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(
        float((x.float() - y.float()).norm() / y.float().norm()) for x, y in zip(a, b, strict=True)
    )


def _same_caches(chunk: SteadyChunk, snapshot: torch.Tensor, run: Callable[[], list]):
    """run() from the cache contents in snapshot, leaving them as it found them."""
    chunk.restore(snapshot)
    out = [t.clone() for t in run()]
    chunk.restore(snapshot)
    return out


def cuda_graph(settings: CheckSettings, name: str) -> dict[str, Any]:
    if not settings.on_cuda:
        raise Skip(f"CUDA graphs need a CUDA device; this run is on {settings.device}")
    reset_peak_memory(settings)
    chunk = steady_chunk(settings, name)
    dev = settings.torch_device
    figures: dict[str, Any] = {"at_preset": name, "steps_per_chunk": chunk.steps}
    with torch.inference_mode():
        eager_s = median_time(chunk.run, settings.repeats, dev)
        figures["eager_chunk_s"] = eager_s
        snapshot = chunk.snapshot()
        eager = _same_caches(chunk, snapshot, chunk.run)
        graph = torch.cuda.CUDAGraph()
        try:
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):  # warm-up off the default stream, as capture wants
                chunk.run()
            torch.cuda.current_stream(dev).wait_stream(side)
            start = time.perf_counter()
            with torch.cuda.graph(graph):
                captured = chunk.run()
            figures["capture_s"] = time.perf_counter() - start
        except Exception as err:
            log.exception("capture of %s failed", name)
            figures.update(
                capturable=False,
                capture_error=f"{type(err).__name__}: {err}".splitlines()[0],
                summary=f"not capturable ({type(err).__name__}); eager {eager_s * 1e3:.1f} ms",
            )
            return figures

        def replay() -> list[torch.Tensor]:
            graph.replay()
            return captured

        replayed = _same_caches(chunk, snapshot, replay)
        graph_s = median_time(graph.replay, settings.repeats, dev)
    error = _relative_error(replayed, eager)
    figures.update(
        capturable=True,
        graph_chunk_s=graph_s,
        speedup=round(eager_s / graph_s, 4),
        relative_error_vs_eager=error,
        **peak_memory(settings),
        summary=f"captured; chunk's DiT forwards {eager_s * 1e3:.1f} ms eager, "
        f"{graph_s * 1e3:.1f} ms replayed ({eager_s / graph_s:.3f}x), rel. error {error:.1e}",
    )
    return figures


def compiled(settings: CheckSettings, name: str) -> dict[str, Any]:
    if not settings.on_cuda:
        raise Skip(
            f"runs on CUDA only (this run is on {settings.device}): compiling on a CPU alone "
            "takes longer than a dry run"
        )
    from torch._dynamo.utils import counters

    reset_peak_memory(settings)
    chunk = steady_chunk(settings, name)
    dev = settings.torch_device
    with torch.inference_mode():
        eager_s = median_time(chunk.run, settings.repeats, dev)
        snapshot = chunk.snapshot()
        eager = _same_caches(chunk, snapshot, chunk.run)
        fast = torch.compile(chunk.forward)

        def run_compiled() -> list[torch.Tensor]:
            return [fast(step) for step in range(chunk.steps)]

        start = time.perf_counter()
        first = _same_caches(chunk, snapshot, run_compiled)  # compiles
        compile_s = time.perf_counter() - start
        compiled_s = median_time(run_compiled, settings.repeats, dev)
    error = _relative_error(first, eager)
    return {
        "at_preset": name,
        "steps_per_chunk": chunk.steps,
        "eager_chunk_s": eager_s,
        "compiled_chunk_s": compiled_s,
        "speedup": round(eager_s / compiled_s, 4),
        "compile_s": compile_s,
        "unique_graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "relative_error_vs_eager": error,
        **peak_memory(settings),
        "summary": f"compiled in {compile_s:.0f} s; chunk's DiT forwards {eager_s * 1e3:.1f} ms "
        f"eager, {compiled_s * 1e3:.1f} ms compiled ({eager_s / compiled_s:.3f}x), "
        f"rel. error {error:.1e}",
    }
