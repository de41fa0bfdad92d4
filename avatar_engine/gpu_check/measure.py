"""The check's measurements: the machine, the matmul ceiling, the DiT presets, the VAE
decoders and the attention backends. Each returns JSON-ready figures; every throughput is
set against a matmul ceiling measured in the same process just before."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from avatar_engine.benchmark import bench_engine, matmul_ceiling, median_time
from avatar_engine.config import PRESETS, Preset
from avatar_engine.costs import summarize
from avatar_engine.gpu_check.settings import CheckSettings
from avatar_engine.model.attention import attention as engine_attention
from avatar_engine.vae.video import to_uint8_frames
from avatar_engine.vae.weights import build_vae, random_vae

log = logging.getLogger("gpu_check")

PACKAGES = ("torch", "safetensors", "numpy", "einops", "pytest", "triton", "flash-attn")
# Packages of the layers above the engine: none may be imported by it (DESIGN.md).
APP_MODULES = ("app", "web", "llm_bridge", "livekit", "gradio", "aiortc", "openai", "fastapi",
               "transformers")  # fmt: skip
SDPA_KERNELS = {
    "sdpa-flash": SDPBackend.FLASH_ATTENTION,
    "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
    "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
    "sdpa-math": SDPBackend.MATH,
}


# ---- helpers ---------------------------------------------------------------------------------


def ceiling_tflops(settings: CheckSettings) -> float:
    """This process's matmul ceiling, in the check's dtype, in TFLOP/s."""
    gflops = matmul_ceiling(
        settings.torch_device,
        settings.torch_dtype,
        size=settings.ceiling_size,
        seconds=settings.ceiling_s,
    )
    return gflops / 1e3


def reset_peak_memory(settings: CheckSettings) -> None:
    if settings.on_cuda:
        torch.cuda.reset_peak_memory_stats(settings.torch_device)


def peak_memory(settings: CheckSettings) -> dict[str, int]:
    """Peak device memory since the last reset (CUDA), or the process's peak RSS (CPU)."""
    if settings.on_cuda:
        return {
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(settings.torch_device),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(settings.torch_device),
        }
    return {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def significant(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def throughput(flops: int, seconds: float, ceiling: float) -> dict[str, float]:
    achieved = flops / seconds / 1e12
    return {
        "achieved_tflops": significant(achieved),
        "ceiling_tflops": significant(ceiling),
        "share_of_ceiling": significant(achieved / ceiling),
        "floor_s": significant(flops / (ceiling * 1e12)),  # the time at 100% of the ceiling
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    query = "name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu"
    done = subprocess.run(
        ["nvidia-smi", f"--query-gpu={query}", "--format=csv"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return (done.stdout or done.stderr).strip()


# ---- sections --------------------------------------------------------------------------------


def environment(settings: CheckSettings) -> dict[str, Any]:
    """The machine and the packages, and that the engine came without the app's layers."""
    figures: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "flash_attn_importable": importlib.util.find_spec("flash_attn") is not None,
        "torch_cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "app_modules_loaded": sorted(
            {name.split(".")[0] for name, module in sys.modules.items() if module is not None}
            & set(APP_MODULES)
        ),
    }
    if settings.on_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"CUDA is not available to torch {torch.__version__} (built for CUDA "
                f"{torch.version.cuda}); run with --device cpu for a dry run"
            )
        props = torch.cuda.get_device_properties(settings.torch_device)
        figures["gpu"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "memory_bytes": props.total_memory,
            "cudnn": torch.backends.cudnn.version(),
            "nvidia_smi": _nvidia_smi(),
        }
        name = props.name
    else:
        name = platform.processor() or platform.machine()
    figures["summary"] = (
        f"{name}, torch {torch.__version__}, python {figures['python']}, flash-attn "
        f"{figures['packages']['flash-attn'] or 'absent'}; app modules loaded: "
        f"{figures['app_modules_loaded'] or 'none'}"
    )
    return figures


def ceiling(settings: CheckSettings) -> dict[str, Any]:
    """Square matmuls at three sizes, and a device-to-device copy's bandwidth."""
    dev, dtype = settings.torch_device, settings.torch_dtype
    sizes = [settings.ceiling_size // 4, settings.ceiling_size // 2, settings.ceiling_size]
    tflops = {
        str(size): significant(
            matmul_ceiling(dev, dtype, size=size, seconds=settings.ceiling_s) / 1e3
        )
        for size in sizes
    }
    elements = (1 << 28 if settings.on_cuda else 1 << 24) // dtype.itemsize  # 256 / 16 MiB
    src = torch.empty(elements, device=dev, dtype=dtype).normal_()
    dst = torch.empty_like(src)
    copy_s = median_time(lambda: dst.copy_(src), settings.repeats * 3, dev)
    best = max(tflops.values())
    copy_gbps = 2 * src.nbytes / copy_s / 1e9
    return {
        "dtype": settings.dtype,
        "matmul_tflops_by_size": tflops,
        "ceiling_tflops": best,
        "copy_gbps_read_plus_write": significant(copy_gbps),
        "summary": f"{settings.dtype} matmul {best:.3g} TFLOP/s (best of sizes {sizes}); "
        f"copy {copy_gbps:.0f} GB/s read+write",
    }


def dit(settings: CheckSettings, name: str) -> dict[str, Any]:
    """A preset with random weights streamed to late_chunk + 5: time per chunk and memory."""
    preset = Preset.from_name(name)
    stream = preset.stream
    top = ceiling_tflops(settings)
    reset_peak_memory(settings)
    started = time.perf_counter()

    def progress(index: int) -> None:
        if index % 10 == 0:
            log.info("%s: chunk %d, %.1f s", name, index, time.perf_counter() - started)

    r = bench_engine(
        preset,
        late_chunk=settings.late_chunk,
        device=settings.device,
        dtype=settings.torch_dtype,
        seed=settings.seed,
        on_chunk=progress,
        matmul_ceiling_gflops=top * 1e3,
    )
    counts = summarize(preset, dtype=settings.torch_dtype).params
    rate = throughput(r.flops_per_chunk, r.chunk_time_s, top)
    return {
        "preset": name,
        "resolution": list(r.resolution),
        "tokens_per_chunk": stream.tokens_per_chunk,
        "denoising_steps": stream.num_steps,
        "params": counts.total,
        "params_audio": counts.audio,
        "chunks_streamed": r.chunks,
        "chunk_time_s": r.chunk_time_s,
        "chunk_duration_s": r.chunk_duration_s,
        "realtime_ratio": round(r.realtime_ratio, 4),
        "flops_per_chunk": r.flops_per_chunk,
        **rate,
        "first_chunk_s": r.first_chunk_s,
        "early_chunk": r.early_chunk,
        "early_time_s": r.early_time_s,
        "late_chunk": r.late_chunk,
        "late_time_s": r.late_time_s,
        "late_vs_early": round(r.late_vs_early, 4),
        "kv_cache_bytes_per_session": r.kv_cache_bytes,
        "sessions_alive": 2,  # the early/late comparison holds two streams
        **peak_memory(settings),
        "wall_s": round(time.perf_counter() - started, 2),
        "summary": f"{r.chunk_time_s * 1e3:.1f} ms per chunk ({r.realtime_ratio:.3f} of "
        f"{r.chunk_duration_s * 1e3:.0f} ms), {rate['achieved_tflops']:.3g} TFLOP/s = "
        f"{rate['share_of_ceiling']:.0%} of {top:.3g}; chunk {r.late_chunk}/chunk "
        f"{r.early_chunk} = {r.late_vs_early:.3f}",
    }


def steady_decode_flops(preset: Preset) -> int:
    """FLOPs of decoding one steady chunk, counted on the meta device (nothing computed)."""
    stream = preset.stream
    with torch.device("meta"):
        vae = build_vae(preset.vae)
    z = torch.empty(
        1, preset.vae.z_dim, stream.chunk_latent_frames, stream.latent_h, stream.latent_w,
        device="meta",
    )  # fmt: skip
    with torch.inference_mode():
        _, state = vae.decode(z)
        with FlopCounterMode(display=False) as counter:
            vae.decode(z, state)
    return counter.get_total_flops()


def vae(settings: CheckSettings, vae_name: str, preset_name: str) -> dict[str, Any]:
    """A VAE decoder with random weights at a preset's resolution: time per chunk."""
    preset = PRESETS[preset_name]
    stream, cfg, dev = preset.stream, preset.vae, settings.torch_device
    top = ceiling_tflops(settings)
    reset_peak_memory(settings)
    model = random_vae(cfg, device=dev, dtype=settings.torch_dtype, seed=settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    z = torch.randn(
        1, cfg.z_dim, stream.chunk_latent_frames, stream.latent_h, stream.latent_w, generator=gen
    ).to(dev)
    repeats = settings.repeats
    with torch.inference_mode():
        _, state = model.decode(z)
        steady_s = median_time(lambda: model.decode(z, state), repeats, dev)
        rgb_s = median_time(
            lambda: to_uint8_frames(model.decode(z, state)[0]).cpu(), repeats, dev
        )  # what the decoder rank does per chunk: frames as bytes on the host
        first_s = median_time(lambda: model.decode(z), repeats, dev)
    flops = steady_decode_flops(preset)
    rate = throughput(flops, steady_s, top)
    share = steady_s / stream.chunk_duration_s
    return {
        "vae": vae_name,
        "at_preset": preset_name,
        "resolution": [stream.height, stream.width],
        "latent_frames_per_chunk": stream.chunk_latent_frames,
        "video_frames_per_chunk": stream.video_frames_per_chunk,
        "params": sum(p.numel() for p in model.parameters()),
        "steady_decode_s": steady_s,
        "steady_decode_to_host_uint8_s": rgb_s,
        "first_decode_s": first_s,
        "chunk_duration_s": stream.chunk_duration_s,
        "decode_share_of_chunk": round(share, 4),
        "flops_per_steady_chunk": flops,
        **rate,
        **peak_memory(settings),
        "summary": f"{vae_name} at {stream.height}x{stream.width}: steady chunk "
        f"{steady_s * 1e3:.1f} ms ({share:.3f} of {stream.chunk_duration_s * 1e3:.0f} ms; "
        f"{rgb_s * 1e3:.1f} ms to host bytes), {rate['achieved_tflops']:.3g} TFLOP/s = "
        f"{rate['share_of_ceiling']:.0%} of {top:.3g}",
    }


def _attention_backends() -> dict[str, Callable]:
    """name -> fn(q, k, v) on [B, L, H, D]; what this machine may have."""

    def sdpa(kernel: SDPBackend) -> Callable:
        def run(q, k, v):
            with sdpa_kernel(kernel):
                out = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)))
            return out.transpose(1, 2)

        return run

    backends: dict[str, Callable] = {"engine-auto": engine_attention}
    if importlib.util.find_spec("flash_attn") is not None:
        from flash_attn import flash_attn_func

        backends["flash-attn"] = flash_attn_func
    backends.update({name: sdpa(kernel) for name, kernel in SDPA_KERNELS.items()})
    return backends


def attention(settings: CheckSettings, name: str) -> dict[str, Any]:
    """Self-attention of one steady chunk (its tokens against sink | previous | itself)."""
    cfg, stream = PRESETS[name].dit, PRESETS[name].stream
    dev, dtype = settings.torch_device, settings.torch_dtype
    top = ceiling_tflops(settings)
    tokens = stream.tokens_per_chunk
    gen = torch.Generator(device=dev).manual_seed(settings.seed)
    q = torch.randn(1, tokens, cfg.num_heads, cfg.head_dim, device=dev, generator=gen)
    k, v = (
        torch.randn(1, 3 * tokens, cfg.num_heads, cfg.head_dim, device=dev, generator=gen)
        for _ in range(2)
    )  # [B, 3Lc, H, D]
    with sdpa_kernel(SDPBackend.MATH):  # the fp32 reference
        reference = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)))
    reference = reference.transpose(1, 2)
    q, k, v = (t.to(dtype) for t in (q, k, v))
    flops = 4 * cfg.num_heads * tokens * 3 * tokens * cfg.head_dim
    results: dict[str, Any] = {}
    for backend, fn in _attention_backends().items():
        try:
            with torch.inference_mode():
                seconds = median_time(lambda fn=fn: fn(q, k, v), settings.repeats, dev)
                out = fn(q, k, v).float()
            error = float((out - reference).norm() / reference.norm())
            results[backend] = {
                "time_s": seconds,
                **throughput(flops, seconds, top),
                "relative_error_vs_fp32": error,
            }
        except Exception as err:  # a kernel this machine or these shapes do not support
            results[backend] = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}
    timed = {b: r for b, r in results.items() if "time_s" in r}
    if not timed:
        raise RuntimeError(f"no attention backend ran: {results}")
    fastest = min(timed, key=lambda b: timed[b]["time_s"])
    best = timed[fastest]
    return {
        "at_preset": name,
        "shape_q": [1, tokens, cfg.num_heads, cfg.head_dim],
        "shape_kv": [1, 3 * tokens, cfg.num_heads, cfg.head_dim],
        "dtype": settings.dtype,
        "flops": flops,
        "ceiling_tflops": significant(top),
        "backends": results,
        "fastest": fastest,
        "summary": f"{len(timed)} of {len(results)} backends ran; fastest {fastest} "
        f"{best['time_s'] * 1e3:.2f} ms, {best['share_of_ceiling']:.0%} of the ceiling (one "
        "layer, one step)",
    }
