"""What every process needs to build its part of the engine: small and picklable."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from safetensors.torch import load_file

from avatar_engine.config import Preset
from avatar_engine.model.dit import AUDIO_MODULES, WanDiT
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.reference_decoder import ReferenceDecoder
from avatar_engine.vae.weights import load_vae, random_vae
from avatar_engine.weights import load_dit, random_dit


@dataclass(frozen=True)
class EngineSpec:
    preset: Preset
    dit_weights: tuple[str, ...] = ()  # safetensors shards; none: random weights from seed
    dit_key_format: str = "native"  # native | wan | diffusers
    vae_weights: tuple[str, ...] = ()  # safetensors shards; none: random weights from seed
    vae_key_format: str = "native"
    reference_decoder_weights: tuple[str, ...] = ()  # none: frames from the VAE's own decoder
    seed: int = 0  # of random weights (tests, benchmarks): every rank builds the same model
    dtype: torch.dtype = torch.float32

    def build_dit(self, device: torch.device | str) -> WanDiT:
        cfg = self.preset.dit
        if not self.dit_weights:
            return random_dit(cfg, device=device, dtype=self.dtype, seed=self.seed)
        return load_dit(
            cfg,
            self.dit_weights,
            key_format=self.dit_key_format,
            device=str(device),
            dtype=self.dtype,
            allow_missing=() if self.dit_key_format == "native" else AUDIO_MODULES,
        )

    def build_vae(self, device: torch.device | str) -> WanVAE:
        cfg = self.preset.vae
        if not self.vae_weights:
            return random_vae(cfg, device=device, dtype=self.dtype, seed=self.seed)
        return load_vae(
            cfg,
            self.vae_weights,
            key_format=self.vae_key_format,
            device=str(device),
            dtype=self.dtype,
        )

    def build_reference_decoder(self, device: torch.device | str) -> ReferenceDecoder | None:
        """The reference decoder the frames are drawn with, or None where the spec has none."""
        if not self.reference_decoder_weights:
            return None
        decoder = ReferenceDecoder(self.preset.vae)
        state: dict[str, torch.Tensor] = {}
        for shard in self.reference_decoder_weights:
            state.update(load_file(shard))
        decoder.load_state_dict(state)
        return decoder.to(device=device, dtype=self.dtype).eval()
