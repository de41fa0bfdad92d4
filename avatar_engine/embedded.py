"""The embedded default model: the trained `tiny` preset shipped in assets/models/tiny."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from avatar_engine.audio.encoder import SpeechEncoder, build_encoder
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.runtime.spec import EngineSpec

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "models" / "tiny"
EMBEDDED_PRESET = "tiny"
SHIPPED_MODE = 0o644  # the weights files' permissions: anyone may read them


@dataclass(frozen=True)
class EmbeddedModel:
    """The three weight files of a trained embedded model."""

    directory: Path = EMBEDDED_DIR

    @property
    def dit(self) -> Path:
        return self.directory / "dit.safetensors"

    @property
    def vae(self) -> Path:
        return self.directory / "vae.safetensors"

    @property
    def audio(self) -> Path:
        return self.directory / "audio.safetensors"

    @property
    def reference_decoder(self) -> Path:
        """Optional: where present, frames are drawn with it (vae/reference_decoder.py)."""
        return self.directory / "reference_decoder.safetensors"

    def check(self) -> EmbeddedModel:
        missing = [p.name for p in (self.dit, self.vae, self.audio) if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"the embedded model in {self.directory} lacks {', '.join(missing)}; it ships "
                "with the repository (git lfs is not needed), or train one with `avatar train`"
            )
        return self

    def spec(self, *, dtype: torch.dtype = torch.float32) -> EngineSpec:
        self.check()
        return EngineSpec(
            preset=Preset.from_name(EMBEDDED_PRESET),
            dit_weights=(str(self.dit),),
            vae_weights=(str(self.vae),),
            reference_decoder_weights=(
                (str(self.reference_decoder),) if self.reference_decoder.is_file() else ()
            ),
            dtype=dtype,
        )

    def encoder(self) -> SpeechEncoder:
        self.check()
        preset = Preset.from_name(EMBEDDED_PRESET)
        return build_encoder(preset.audio, FrameGeometry.of_preset(preset), weights=self.audio)

    def save(
        self,
        *,
        dit: nn.Module,
        vae: nn.Module,
        encoder: nn.Module,
        reference_decoder: nn.Module | None = None,
    ) -> None:
        """Write the three files, and the reference decoder's where there is one (atomically
        each); without one, an older reference decoder's file is removed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        parts = [(dit, self.dit), (vae, self.vae), (encoder, self.audio)]
        if reference_decoder is not None:
            parts.append((reference_decoder, self.reference_decoder))
        else:
            self.reference_decoder.unlink(missing_ok=True)
        for module, path in parts:
            state = {k: v.detach().float().contiguous() for k, v in module.state_dict().items()}
            tmp = path.with_suffix(".tmp")
            save_file(state, str(tmp))
            tmp.chmod(SHIPPED_MODE)  # safetensors writes 0600; shipped weights are world-readable
            tmp.replace(path)
