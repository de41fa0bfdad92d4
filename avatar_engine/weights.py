"""Build on the meta device, load safetensors with assign, convert foreign key names."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from avatar_engine.config import DiTConfig
from avatar_engine.model.dit import WanDiT, names_match

StateDict = dict[str, torch.Tensor]

_WRAPPER_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.", "module.")

# diffusers WanTransformer3DModel name -> ours (the official Wan names), applied in order.
_DIFFUSERS_RULES: list[tuple[str, str]] = [
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.image_embedder\.norm1\.", "img_emb.proj.0."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.0\.proj\.", "img_emb.proj.1."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.2\.", "img_emb.proj.3."),
    (r"^condition_embedder\.image_embedder\.norm2\.", "img_emb.proj.4."),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"\.add_k_proj\.", ".k_img."),
    (r"\.add_v_proj\.", ".v_img."),
    (r"\.norm_added_k\.", ".norm_k_img."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),  # diffusers swaps the native norm2/norm3
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
]
# Present in some diffusers checkpoints and unused by Wan 2.1 (diffusers ignores it too).
_DIFFUSERS_IGNORED = re.compile(r"\.norm_added_q\.")


class WeightLoadError(RuntimeError):
    """A checkpoint does not fit the model; the message names every offending key."""


def convert_native(state: StateDict) -> StateDict:
    return dict(state)


def strip_prefixes(state: StateDict, prefixes: Sequence[str]) -> StateDict:
    """Drop the first of `prefixes` each name starts with (wrappers some exporters add)."""
    out = {}
    for name, tensor in state.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        out[name] = tensor
    return out


def convert_wan(state: StateDict) -> StateDict:
    """Official Wan names are ours; only strip wrapper prefixes some exporters add."""
    return strip_prefixes(state, _WRAPPER_PREFIXES)


def convert_diffusers(state: StateDict) -> StateDict:
    out = {}
    for name, tensor in state.items():
        if _DIFFUSERS_IGNORED.search(name):
            continue
        for pattern, replacement in _DIFFUSERS_RULES:
            name = re.sub(pattern, replacement, name)
        out[name] = tensor
    return out


CONVERTERS: dict[str, Callable[[StateDict], StateDict]] = {
    "native": convert_native,
    "wan": convert_wan,
    "diffusers": convert_diffusers,
}


def build_dit(cfg: DiTConfig, *, device: torch.device | str = "meta") -> WanDiT:
    """Build the model; on the meta device this allocates no parameter memory."""
    with torch.device(device):
        return WanDiT(cfg)


def read_safetensors(paths: Sequence[Path | str], *, device: str = "cpu") -> StateDict:
    """Read one or more safetensors shards (memory-mapped) into a single state dict."""
    state: StateDict = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"weight file {path} does not exist")
        with safe_open(str(path), framework="pt", device=device) as f:
            for name in f.keys():
                state[name] = f.get_tensor(name)
    return state


def _listing(title: str, names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    more = f" (and {len(names) - limit} more)" if len(names) > limit else ""
    return f"{title} ({len(names)}): {shown}{more}"


def state_problems(
    expected: Mapping[str, torch.Tensor],
    state: StateDict,
    *,
    may_miss: Callable[[str], bool] | None = None,
) -> list[str]:
    """One line per kind of problem (missing, unexpected, shape-mismatched keys), naming the
    keys; empty when `state` fits `expected`. Keys for which may_miss is true may be absent."""
    refused = [n for n in expected if n not in state and not (may_miss and may_miss(n))]
    unexpected = [n for n in state if n not in expected]
    mismatched = [
        f"{n} {tuple(state[n].shape)} vs model {tuple(t.shape)}"
        for n, t in expected.items()
        if n in state and state[n].shape != t.shape
    ]
    return [
        _listing(title, names)
        for title, names in (
            ("missing keys", refused),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if names
    ]


def load_state(
    model: WanDiT,
    state: StateDict,
    *,
    allow_missing: Iterable[str] = (),
    device: torch.device | str = "cpu",
) -> list[str]:
    """Assign a state dict to a (meta-built) model.

    Args:
        allow_missing: name fragments (see names_match, e.g. AUDIO_MODULES) of
            parameters the checkpoint may lack; those are created on `device` and initialised.

    Returns:
        The names that were missing and initialised.
    """
    fragments = tuple(allow_missing)
    expected = model.state_dict()
    missing = [n for n in expected if n not in state]
    problems = state_problems(expected, state, may_miss=lambda n: names_match(n, fragments))
    if problems:
        raise WeightLoadError(
            "checkpoint does not fit the model:\n  " + "\n  ".join(problems) + "\n"
            "Check the preset and the key format (native, wan or diffusers); a plain Wan trunk "
            "has no audio modules: allow them with allow_missing=AUDIO_MODULES."
        )
    model.load_state_dict(state, strict=False, assign=True)
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if any(p.is_meta for p in own):
            module.to_empty(device=device, recurse=False)
            model.init_module(module)
    return missing


def load_dit(
    cfg: DiTConfig,
    paths: Sequence[Path | str],
    *,
    key_format: str = "native",
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    allow_missing: Iterable[str] = (),
) -> WanDiT:
    """Build on meta, read safetensors shards, convert names, load with assign, cast."""
    if key_format not in CONVERTERS:
        raise ValueError(f"unknown key format {key_format!r}; use one of {list(CONVERTERS)}")
    model = build_dit(cfg)
    state = CONVERTERS[key_format](read_safetensors(paths, device=device))
    load_state(model, state, allow_missing=allow_missing, device=device)
    if dtype is not None:
        model.to_compute_dtype(dtype)
    return model.eval()


def save_dit(model: WanDiT, path: Path | str) -> None:
    state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(path))


def random_dit(
    cfg: DiTConfig, *, device: torch.device | str, dtype: torch.dtype, seed: int = 0
) -> WanDiT:
    """A randomly initialised model built straight in `dtype` on `device` (benchmarks, tests).

    Building on meta first means a 16B-parameter bf16 model never exists in fp32.
    """
    model = build_dit(cfg).to_compute_dtype(dtype)
    model.to_empty(device=device)
    with seeded(seed):
        return model.init_weights().eval()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's random number generators seeded with `seed` inside, and restored after: a model
    initialised from a seed moves no other draw of the process."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
