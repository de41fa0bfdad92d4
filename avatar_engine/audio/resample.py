"""A streaming polyphase resampler whose output does not depend on how the input was split.

Output sample n sits at input position n·down/up and is a windowed-sinc dot product over the
input samples within `half` of it, so it can be computed as soon as those have arrived. Samples
before the start are zeros, and flush() pads zeros after the end, so one push of a whole
utterance and many small pushes give the same samples. (Written here rather than taken from a
library: the engine stays pure torch, and the split-invariance is what the feature stream's
equality with offline extraction rests on.) Each output waits for `half` input samples past
its position: 1 ms at 44.1 or 48 kHz, 2 ms at 8 kHz, nothing at the output rate itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ZERO_CROSSINGS = 16  # sinc lobes on each side at the cutoff: stopband well below PCM16's noise
KAISER_BETA = 8.0
BLOCK = 8192  # outputs computed at once: the gather is [BLOCK, taps], whatever the push's length


def _filters(up: int, down: int) -> tuple[torch.Tensor, int]:
    """Per-phase windowed-sinc taps, [up, 2·half+1] float64, and half."""
    cutoff = min(1.0, up / down)  # fraction of the input Nyquist kept (anti-aliasing)
    half = math.ceil(ZERO_CROSSINGS / cutoff)
    offsets = torch.arange(-half, half + 1, dtype=torch.float64)  # input taps around the base
    phases = torch.arange(up, dtype=torch.float64)[:, None] / up  # fractional positions
    x = offsets[None] - phases  # [up, taps] distance from the exact input position
    window = torch.special.i0(KAISER_BETA * (1 - (x / (half + 1)).clamp(-1, 1) ** 2).sqrt())
    taps = cutoff * torch.sinc(cutoff * x) * window / torch.special.i0(torch.tensor(KAISER_BETA))
    return taps / taps.sum(dim=1, keepdim=True), half  # unity gain at DC for every phase


class StreamingResampler:
    """Resamples one stream from in_rate to out_rate, push by push."""

    def __init__(self, in_rate: int, out_rate: int):
        g = math.gcd(in_rate, out_rate)
        self.in_rate, self.out_rate = in_rate, out_rate
        self.up, self.down = out_rate // g, in_rate // g
        self.taps, self.half = _filters(self.up, self.down)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next push starts a new stream (zeros before it)."""
        self.buffer = torch.zeros(self.half, dtype=torch.float64)  # input from buffer_start on
        self.buffer_start = -self.half  # absolute input index of buffer[0]
        self.received = 0  # input samples pushed
        self.produced = 0  # output samples returned

    def push(self, samples: torch.Tensor) -> torch.Tensor:
        """Args: samples: [N] float64 at in_rate. Returns [M] float64 now computable."""
        self.received += samples.numel()
        if self.in_rate == self.out_rate:
            return samples  # nothing to do, and no delay
        self.buffer = torch.cat([self.buffer, samples])
        # output n needs input up to base(n) + half, base(n) = floor(n·down/up)
        ready = ((self.received - self.half - 1) * self.up) // self.down + 1
        return self._produce(ready)

    def flush(self) -> torch.Tensor:
        """The rest of the output for everything pushed, as if zeros followed; then reset."""
        if self.in_rate == self.out_rate:
            self.reset()
            return torch.zeros(0, dtype=torch.float64)
        total = -(-self.received * self.up // self.down)  # ceil: the input's duration
        self.buffer = torch.cat([self.buffer, torch.zeros(2 * self.half + 1, dtype=torch.float64)])
        out = self._produce(total)
        self.reset()
        return out

    def _produce(self, end: int) -> torch.Tensor:
        if end <= self.produced:
            return torch.zeros(0, dtype=torch.float64)
        offsets = torch.arange(-self.half, self.half + 1) - self.buffer_start
        blocks = []
        for start in range(self.produced, end, BLOCK):
            n = torch.arange(start, min(start + BLOCK, end))
            position = n * self.down  # each output's input position, in units of 1/up
            base, phase = position // self.up, position % self.up
            index = base[:, None] + offsets
            blocks.append((self.buffer[index] * self.taps[phase]).sum(dim=1))
        out = torch.cat(blocks)  # [M]
        self.produced = end
        keep_from = self.produced * self.down // self.up - self.half  # oldest input still needed
        self.buffer = self.buffer[keep_from - self.buffer_start :]
        self.buffer_start = keep_from
        return out


def resample(wave: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """A whole signal at another rate: [N] float -> [ceil(N·out/in)] float32."""
    resampler = StreamingResampler(in_rate, out_rate)
    pushed = resampler.push(torch.from_numpy(np.asarray(wave, dtype=np.float64)))
    return torch.cat([pushed, resampler.flush()]).float().numpy()
