"""What one run of the GPU check measures, and how hard, per device."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from avatar_engine.config import PRESETS, VAE_PRESETS, Preset

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
HEADLINE_PRESETS = ("talkingmachines-14b", "wan2.1-1.3b")  # the two DiT figures
EMBEDDED_PRESET = "tiny"  # its decoder is measured too: the embedded model on a GPU


@dataclass(frozen=True)
class CheckSettings:
    out: Path  # where the report, the log and the test results go
    device: str = "cuda"
    dtype: str = "bf16"  # of the models and of the matmul ceiling
    presets: tuple[str, ...] = HEADLINE_PRESETS  # DiT presets measured, the headline first
    late_chunk: int = 30  # compared with chunk 10 (bench_engine's minimum is 21)
    repeats: int = 10  # timed repetitions of the VAE, attention, graph and compile figures
    ceiling_size: int = 8192  # side of the square matmuls of the ceiling
    ceiling_s: float = 1.0  # how long each ceiling measurement runs
    seed: int = 0
    torch_dtype: torch.dtype = field(init=False)

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; use one of {sorted(DTYPES)}")
        for name in self.presets:
            Preset.from_name(name)  # an unknown name fails here, with the known ones listed
        if not self.presets:
            raise ValueError("name at least one preset")
        object.__setattr__(self, "torch_dtype", DTYPES[self.dtype])

    @classmethod
    def for_device(cls, out: Path, device: str, **overrides) -> CheckSettings:
        """Defaults sized for the device: a GPU's full figures, or a CPU dry run of seconds."""
        if torch.device(device).type == "cpu":
            small = dict(
                dtype="fp32",  # bf16 matmuls run at 1-2 GFLOP/s on CPUs without bf16 units
                presets=(EMBEDDED_PRESET,),
                late_chunk=21,
                repeats=2,
                ceiling_size=512,
                ceiling_s=0.2,
            )
            overrides = {**small, **{k: v for k, v in overrides.items() if v is not None}}
        else:
            overrides = {k: v for k, v in overrides.items() if v is not None}
        return cls(out=out, device=device, **overrides)

    def as_json(self) -> dict[str, object]:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "presets": list(self.presets),
            "late_chunk": self.late_chunk,
            "repeats": self.repeats,
            "ceiling_size": self.ceiling_size,
            "ceiling_s": self.ceiling_s,
            "seed": self.seed,
        }

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def on_cuda(self) -> bool:
        return self.torch_device.type == "cuda"

    def vae_presets(self) -> dict[str, str]:
        """VAE name -> the preset whose resolution it is measured at; the embedded one last."""
        out: dict[str, str] = {}
        for name in (*self.presets, EMBEDDED_PRESET):
            out.setdefault(vae_name(PRESETS[name]), name)
        return out


def vae_name(preset: Preset) -> str:
    return next(name for name, cfg in VAE_PRESETS.items() if cfg == preset.vae)
