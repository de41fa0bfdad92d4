"""What every training stage shares: a run directory, resumable checkpoints, a progress bar and
a JSON-lines log of the losses."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from avatar_engine.embedded import EmbeddedModel

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


class TrainLoop:
    """Runs `step(i) -> {loss name: value}` from the last checkpoint to `total` steps.

    The checkpoint holds the modules, the optimizers, the step and the torch RNG state, and is
    written atomically (a crash mid-save keeps the previous one).
    """

    def __init__(
        self,
        run_dir: Path | str,
        *,
        modules: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        total: int,
        save_every: int = 100,
        desc: str = "train",
    ):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.modules, self.optimizers = modules, optimizers
        self.total, self.save_every, self.desc = total, save_every, desc
        self.step = 0
        path = self.dir / CHECKPOINT
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=False)
            for name, module in modules.items():
                module.load_state_dict(state["modules"][name])
            for name, opt in optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
            self.step = state["step"]
            torch.set_rng_state(state["rng"])

    def save(self) -> None:
        state = {
            "modules": {n: m.state_dict() for n, m in self.modules.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "step": self.step,
            "rng": torch.get_rng_state(),
        }
        tmp = self.dir / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.dir / CHECKPOINT)

    def run(self, step: Callable[[int], dict[str, float]]) -> None:
        bar = tqdm(total=self.total, initial=self.step, desc=self.desc, dynamic_ncols=True)
        with open(self.dir / LOG, "a") as log:
            while self.step < self.total:
                start = time.perf_counter()
                losses = step(self.step)
                self.step += 1
                record = {"step": self.step, "seconds": time.perf_counter() - start, **losses}
                log.write(json.dumps(record) + "\n")
                bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()})
                bar.update()
                if self.step % self.save_every == 0 or self.step == self.total:
                    self.save()
                    log.flush()
        bar.close()


def read_log(run_dir: Path | str) -> Iterator[dict[str, float]]:
    with open(Path(run_dir) / LOG) as log:
        yield from (json.loads(line) for line in log)


def cosine_lr(step: int, total: int, *, peak: float, warmup: int = 50) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(progress * math.pi)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def load_trained(run_dir: Path | str, name: str, module: nn.Module) -> nn.Module:
    """Load one module's weights from a run's checkpoint (for the next stage or export), or
    from an exported model's directory (assets/models/tiny): its VAE for "vae", its reference
    decoder for "decoder", its DiT and speech encoder for a teacher or student, so training can
    go on from the shipped model and a new student ships with the shipped decoder."""
    exported = EmbeddedModel(Path(run_dir))
    if exported.dit.is_file():
        exported.check()
        if name in ("vae", "decoder"):
            weights = exported.vae if name == "vae" else exported.reference_decoder
            if not weights.is_file():
                raise FileNotFoundError(f"{exported.directory} has no {weights.name}")
            module.load_state_dict(load_file(str(weights)))
        else:  # a teacher or a student: the DiT and its speech encoder
            module.dit.load_state_dict(load_file(str(exported.dit)))
            module.encoder.load_state_dict(load_file(str(exported.audio)))
        return module.eval()
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run that training stage first, or name an exported "
            "model's directory"
        )
    state = torch.load(path, map_location="cpu", weights_only=False)
    if name not in state["modules"]:
        raise ValueError(f"{path} holds {sorted(state['modules'])}, not {name!r}")
    module.load_state_dict(state["modules"][name])
    return module.eval()
