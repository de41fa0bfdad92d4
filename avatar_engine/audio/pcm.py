"""Turning whatever audio a caller has (PCM16 bytes, int16 or float arrays, mono or
interleaved/stacked stereo) into one validated mono float64 tensor."""

from __future__ import annotations

import numpy as np
import torch

MIN_RATE, MAX_RATE = 4000, 384000
INT16_SCALE = 32768.0


def to_mono(
    audio: bytes | np.ndarray | torch.Tensor,
    sample_rate: int,
    *,
    channels: int = 1,
    max_seconds: float,
) -> torch.Tensor:
    """Args:
        audio: PCM16 bytes (interleaved when channels > 1); or an int16/float array shaped
            [N] (interleaved when channels > 1) or [N, C] (frames × channels, as soundfile and
            PyAV give it). Floats are in [-1, 1].
        sample_rate: Hz of the audio.
        channels: channels of interleaved input; ignored for [N, C] arrays.
        max_seconds: longest push accepted.

    Returns:
        [N] float64, the mean of the channels.
    """
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise ValueError(f"sample rate {sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    if isinstance(audio, bytes | bytearray | memoryview):
        if len(audio) % 2:
            raise ValueError("PCM16 bytes must have an even length (2 bytes per sample)")
        audio = np.frombuffer(audio, dtype=np.int16).copy()
    samples = torch.as_tensor(audio)
    if samples.dtype == torch.int16:
        samples = samples.double() / INT16_SCALE
    elif samples.is_floating_point():
        samples = samples.double()
    else:
        raise ValueError(f"audio must be int16 PCM or float samples, not {samples.dtype}")
    if samples.ndim == 1:
        if channels < 1 or samples.numel() % channels:
            raise ValueError(f"{samples.numel()} interleaved samples do not split into {channels}")
        samples = samples.view(-1, channels)  # [N, C]
    elif samples.ndim != 2:
        raise ValueError(
            f"audio must be [samples] or [samples, channels], not {tuple(samples.shape)}"
        )
    if samples.shape[1] > 8:
        raise ValueError(
            f"audio of shape {tuple(samples.shape)} has {samples.shape[1]} channels; "
            "pass [samples, channels], not [channels, samples]"
        )
    if samples.shape[0] > max_seconds * sample_rate:
        raise ValueError(
            f"{samples.shape[0] / sample_rate:.1f} s of audio in one push; push at most "
            f"{max_seconds:g} s at a time"
        )
    if not torch.isfinite(samples).all():
        raise ValueError("audio contains NaN or infinite samples; nothing was added")
    return samples.mean(dim=1)  # [N]
