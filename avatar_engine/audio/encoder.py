"""One interface over the two speech encoders, chosen by the preset's AudioConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.audio.mel import MelEncoder
from avatar_engine.audio.wav2vec2 import Wav2Vec2Encoder
from avatar_engine.config import AudioConfig
from avatar_engine.weights import WeightLoadError, read_safetensors, state_problems


class SpeechEncoder(Protocol):
    context_frames: int  # video frames of past audio a window needs before its first output

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        """Args: wave: [N, S] 16 kHz. Returns [N, S / samples_per_frame, feature_dim]."""
        ...


def build_encoder(
    cfg: AudioConfig,
    geometry: FrameGeometry,
    *,
    weights: str | Path | None = None,
    wav2vec2_path: str | Path | None = None,
) -> SpeechEncoder:
    """The preset's encoder: the mel encoder (trained with the DiT; `weights` is its
    safetensors file, None leaves it at its initialisation), or wav2vec2 loaded from a local
    directory."""
    if cfg.encoder == "mel":
        encoder = MelEncoder(cfg, geometry.samples_per_frame).eval()
        if weights is not None:
            state = read_safetensors([weights])
            problems = state_problems(encoder.state_dict(), state)
            if problems:
                raise WeightLoadError(
                    f"speech encoder weights {weights} do not fit: " + "; ".join(problems)
                )
            encoder.load_state_dict(state)
        return encoder
    if wav2vec2_path is None:
        raise ValueError(
            "this preset uses wav2vec2 speech features: pass the local directory of a "
            "wav2vec2 checkpoint (nothing is downloaded at run time)"
        )
    return Wav2Vec2Encoder.from_local(wav2vec2_path, cfg, geometry.samples_per_frame)
