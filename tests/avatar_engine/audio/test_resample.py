"""The resampler: accurate at every common rate, and blind to how the input was split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatar_engine.audio.resample import StreamingResampler

RATES = (8000, 16000, 22050, 24000, 44100, 48000)


@pytest.mark.parametrize("rate", RATES)
def test_tone_survives_resampling(rate):
    resampler = StreamingResampler(rate, 16000)
    tone = torch.sin(2 * math.pi * 440 * torch.arange(rate, dtype=torch.float64) / rate)
    out = torch.cat([resampler.push(tone), resampler.flush()])
    assert out.numel() == 16000  # one second in, one second out
    expected = torch.sin(2 * math.pi * 440 * torch.arange(16000, dtype=torch.float64) / 16000)
    inner = slice(100, -100)  # away from the zero padding at both ends
    assert float((out[inner] - expected[inner]).abs().max()) < 1e-3


@pytest.mark.parametrize("rate", (22050, 44100, 48000))
def test_output_does_not_depend_on_push_sizes(rate):
    audio = torch.randn(rate // 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    whole = StreamingResampler(rate, 16000)
    reference = torch.cat([whole.push(audio), whole.flush()])
    pieces = StreamingResampler(rate, 16000)
    sizes = np.random.default_rng(1).integers(1, 700, size=len(audio))
    bounds = np.cumsum(np.concatenate([[0], sizes]))
    parts = [
        pieces.push(audio[a:b]) for a, b in zip(bounds, bounds[1:], strict=False) if a < len(audio)
    ]
    streamed = torch.cat([*parts, pieces.flush()])
    assert torch.equal(streamed, reference)


def test_content_above_the_new_nyquist_is_removed():
    resampler = StreamingResampler(48000, 16000)
    tone = torch.sin(2 * math.pi * 12000 * torch.arange(48000, dtype=torch.float64) / 48000)
    out = torch.cat([resampler.push(tone), resampler.flush()])[200:-200]
    assert float(out.abs().max()) < 1e-3  # 12 kHz would alias to 4 kHz
