"""VAE checkpoints: build on meta, load safetensors with assign, convert foreign key names.

Our names are the official Wan names (`wan/modules/vae.py`), so the Wan converter only strips
wrapper prefixes. diffusers' `AutoencoderKLWan` names map onto them by the rules below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from avatar_engine.config import VAEConfig
from avatar_engine.vae.model import WanVAE
from avatar_engine.weights import (
    StateDict,
    WeightLoadError,
    convert_native,
    read_safetensors,
    seeded,
    state_problems,
    strip_prefixes,
)

# Wrappers seen around VAE state dicts (ComfyUI / LDM-style exports, DDP).
_WAN_PREFIXES = ("first_stage_model.", "vae.", "model.", "module.")

_BLOCK = r"((?:down_blocks|resnets)\.\d+\.)"  # a residual block inside diffusers' containers
# diffusers AutoencoderKLWan name -> ours (official Wan), applied in order.
_DIFFUSERS_RULES: list[tuple[str, str]] = [
    (_BLOCK + r"norm1\.", r"\1residual.0."),
    (_BLOCK + r"conv1\.", r"\1residual.2."),
    (_BLOCK + r"norm2\.", r"\1residual.3."),
    (_BLOCK + r"conv2\.", r"\1residual.6."),
    (_BLOCK + r"conv_shortcut\.", r"\1shortcut."),
    (r"\.mid_block\.resnets\.0\.", ".middle.0."),
    (r"\.mid_block\.attentions\.0\.", ".middle.1."),
    (r"\.mid_block\.resnets\.1\.", ".middle.2."),
    (r"^(encoder|decoder)\.conv_in\.", r"\1.conv1."),
    (r"^(encoder|decoder)\.norm_out\.", r"\1.head.0."),
    (r"^(encoder|decoder)\.conv_out\.", r"\1.head.2."),
    (r"^quant_conv\.", "conv1."),
    (r"^post_quant_conv\.", "conv2."),
    (r"^encoder\.down_blocks\.", "encoder.downsamples."),
]
# Wan flattens the decoder's stages into one sequence: each stage's residual blocks, then its
# upsample. diffusers nests them as up_blocks.<stage>.resnets.<j> / .upsamplers.0.
_UP_RESNET = re.compile(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.")
_UP_SAMPLER = re.compile(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.")


def convert_wan_vae(state: StateDict) -> StateDict:
    return strip_prefixes(state, _WAN_PREFIXES)


def convert_diffusers_vae(state: StateDict) -> StateDict:
    # Residual blocks per decoder stage, read off the checkpoint (num_res_blocks + 1).
    per_stage = 1 + max(
        (int(m.group(2)) for n in state if (m := _UP_RESNET.match(n)) and m.group(1) == "0"),
        default=0,
    )
    stride = per_stage + 1  # the stage's upsample follows its residual blocks

    def flat_resnet(m: re.Match[str]) -> str:
        return f"decoder.upsamples.{int(m.group(1)) * stride + int(m.group(2))}."

    def flat_sampler(m: re.Match[str]) -> str:
        return f"decoder.upsamples.{int(m.group(1)) * stride + per_stage}."

    out = {}
    for name, tensor in state.items():
        for pattern, replacement in _DIFFUSERS_RULES:
            name = re.sub(pattern, replacement, name)
        name = _UP_SAMPLER.sub(flat_sampler, _UP_RESNET.sub(flat_resnet, name))
        out[name] = tensor
    return out


VAE_CONVERTERS: dict[str, Callable[[StateDict], StateDict]] = {
    "native": convert_native,
    "wan": convert_wan_vae,
    "diffusers": convert_diffusers_vae,
}


def build_vae(cfg: VAEConfig, *, device: torch.device | str = "meta") -> WanVAE:
    """Build the VAE; on the meta device this allocates no parameter memory."""
    with torch.device(device):
        return WanVAE(cfg)


def load_vae_state(model: WanVAE, state: StateDict, *, device: torch.device | str = "cpu") -> None:
    """Assign a complete state dict (our names) to a (meta-built) VAE.

    Raises:
        WeightLoadError naming every missing, unexpected and shape-mismatched key.
    """
    problems = state_problems(model.state_dict(), state)
    if problems:
        raise WeightLoadError(
            "VAE checkpoint does not fit the model:\n  " + "\n  ".join(problems) + "\n"
            "Check the VAE preset (tiny or wan2.1) and the key format (native, wan or diffusers)."
        )
    model.load_state_dict(state, assign=True)
    model.init_latent_stats(device)


def load_vae(
    cfg: VAEConfig,
    paths: Sequence[Path | str],
    *,
    key_format: str = "native",
    device: str = "cpu",
    dtype: torch.dtype | None = None,
) -> WanVAE:
    """Build on meta, read safetensors shards, convert names, load with assign, cast."""
    if key_format not in VAE_CONVERTERS:
        raise ValueError(f"unknown key format {key_format!r}; use one of {list(VAE_CONVERTERS)}")
    model = build_vae(cfg)
    state = VAE_CONVERTERS[key_format](read_safetensors(paths, device=device))
    load_vae_state(model, state, device=device)
    if dtype is not None:
        model.to_compute_dtype(dtype)
    return model.eval()


def save_vae(model: WanVAE, path: Path | str) -> None:
    state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(path))


def random_vae(
    cfg: VAEConfig, *, device: torch.device | str, dtype: torch.dtype = torch.float32, seed: int = 0
) -> WanVAE:
    """A freshly initialised VAE built straight on `device` (training from scratch, tests)."""
    model = build_vae(cfg).to_compute_dtype(dtype)
    model.to_empty(device=device)
    with seeded(seed):
        return model.init_weights().eval()
