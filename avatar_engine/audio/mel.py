"""The light speech encoder of the embedded preset: causal log-mel frames computed with torch,
then a small learned causal conv encoder, one feature vector per video frame.

Causal means a video frame's feature depends only on audio up to that frame's end (and a
bounded past), so a click at time t first shows in video frame floor(t·fps), and a chunk needs
no audio beyond its windows' look-ahead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avatar_engine.config import AudioConfig

LOG_FLOOR = 1e-6  # power floor before the log: digital silence stays finite


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_filterbank(bins: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """Triangular HTK-mel filters, [n_fft//2 + 1, bins], from 0 Hz to Nyquist."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges_mel = torch.linspace(0, float(_hz_to_mel(torch.tensor(sample_rate / 2))), bins + 2)
    edges = 700.0 * (10 ** (edges_mel.double() / 2595.0) - 1.0)  # [bins+2] Hz
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (center - lower)
    falling = (upper - freqs[:, None]) / (upper - center)
    return rising.minimum(falling).clamp(min=0).float()


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the past side only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.kernel_size[0] - 1, 0)))


class MelEncoder(nn.Module):
    """16 kHz audio → one learned feature vector per video frame."""

    def __init__(self, cfg: AudioConfig, samples_per_frame: int):
        super().__init__()
        per_frame = cfg.mel_frames_per_video_frame
        if samples_per_frame % per_frame:
            raise ValueError(
                f"{samples_per_frame} samples per video frame do not split into "
                f"{per_frame} mel frames"
            )
        self.samples_per_frame = samples_per_frame
        self.hop = samples_per_frame // per_frame
        self.n_fft = cfg.mel_window
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer(
            "filterbank",
            mel_filterbank(cfg.mel_bins, self.n_fft, cfg.sample_rate),
            persistent=False,
        )
        width, kernel = cfg.mel_channels, cfg.mel_kernel
        self.convs = nn.Sequential(
            CausalConv1d(cfg.mel_bins, width, kernel),
            nn.GELU(),
            CausalConv1d(width, width, kernel),
            nn.GELU(),
        )
        self.proj = nn.Linear(per_frame * width, cfg.feature_dim)
        past_samples = self.n_fft - self.hop + 2 * (kernel - 1) * self.hop  # receptive field
        self.context_frames = math.ceil(past_samples / samples_per_frame)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Args: wave: [N, S] with S a multiple of the hop. Returns [N, S/hop, bins]; frame m
        covers the n_fft samples ending at (m+1)·hop."""
        padded = F.pad(wave, (self.n_fft - self.hop, 0))
        frames = padded.unfold(-1, self.n_fft, self.hop)  # [N, M, n_fft]
        power = torch.fft.rfft(frames * self.window).abs().square()  # [N, M, n_fft/2+1]
        return torch.log(power @ self.filterbank + LOG_FLOOR)  # [N, M, bins]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Args:
            wave: [N, S] 16 kHz audio, S a multiple of samples_per_frame.

        Returns:
            [N, S / samples_per_frame, feature_dim]; the first context_frames rows have seen
            zeros before the window and are meant to be dropped.
        """
        x = self.convs(self.log_mel(wave.float()).transpose(1, 2))  # [N, C, M]
        frames = wave.shape[1] // self.samples_per_frame
        x = x.transpose(1, 2).reshape(wave.shape[0], frames, -1)  # [N, F, per_frame*C]
        return self.proj(x)
