"""The pretrained speech encoder of the large presets: transformers' Wav2Vec2Model, loaded from
a local directory (never downloaded at run time). The hidden states of the chosen layers are
interpolated from wav2vec2's 50 Hz to the video fps and stacked, as MultiTalk does.

wav2vec2 attends over its whole input, so each chunk runs it on a fixed window: some past
context, the chunk's audio windows and the look-ahead. A frame's feature therefore depends on
the window it was computed in; streaming and offline extraction use the same windows.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avatar_engine.config import AudioConfig

NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor's zero-mean, unit-variance normalisation


class Wav2Vec2Encoder(nn.Module):
    """16 kHz audio → stacked wav2vec2 hidden states, one vector per video frame."""

    def __init__(self, model: nn.Module, cfg: AudioConfig, samples_per_frame: int, normalize: bool):
        super().__init__()
        hidden = model.config.hidden_size
        if cfg.feature_dim != hidden * len(cfg.wav2vec2_layers):
            raise ValueError(
                f"the preset wants {cfg.feature_dim}-dim features but {len(cfg.wav2vec2_layers)} "
                f"layers of this {hidden}-wide wav2vec2 give {hidden * len(cfg.wav2vec2_layers)}"
            )
        deepest = max(cfg.wav2vec2_layers)
        if deepest > model.config.num_hidden_layers:
            raise ValueError(
                f"layer {deepest} requested; this wav2vec2 has "
                f"{model.config.num_hidden_layers} layers"
            )
        self.model = model.eval()
        self.layers = cfg.wav2vec2_layers
        self.samples_per_frame = samples_per_frame
        self.normalize = normalize
        self.context_frames = cfg.wav2vec2_context_frames

    @classmethod
    def from_local(
        cls, path: str | Path, cfg: AudioConfig, samples_per_frame: int
    ) -> Wav2Vec2Encoder:
        """Load a wav2vec2 checkpoint directory (config.json + weights), e.g. a local copy of
        facebook/wav2vec2-base-960h."""
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"no wav2vec2 checkpoint at {path} (config.json missing). Weights are never "
                "downloaded at run time: copy a wav2vec2 directory (config.json and "
                "model.safetensors) there and pass its path."
            )
        model = Wav2Vec2Model.from_pretrained(path, local_files_only=True)
        normalize = True
        if (path / "preprocessor_config.json").is_file():
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(path, local_files_only=True)
            normalize = extractor.do_normalize
        return cls(model, cfg, samples_per_frame, normalize)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Args:
            wave: [N, S] 16 kHz audio, S a multiple of samples_per_frame.

        Returns:
            [N, S / samples_per_frame, len(layers) * hidden]
        """
        dtype = next(self.model.parameters()).dtype
        wave = wave.float()
        if self.normalize:
            mean = wave.mean(dim=1, keepdim=True)
            wave = (wave - mean) / (wave.var(dim=1, keepdim=True) + NORM_EPS).sqrt()
        out = self.model(wave.to(dtype), output_hidden_states=True)
        hidden = torch.cat([out.hidden_states[i] for i in self.layers], dim=-1)  # [N, T50, Da]
        frames = wave.shape[1] // self.samples_per_frame
        hidden = F.interpolate(
            hidden.transpose(1, 2).float(), size=frames, mode="linear", align_corners=True
        )  # [N, Da, F]
        return hidden.transpose(1, 2)
