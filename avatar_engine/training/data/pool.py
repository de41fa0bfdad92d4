"""A pool of clips kept in memory as bytes, refreshed a little every step, so training sees
new data without waiting for espeak and the renderer on every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.framing import as_uint8
from avatar_engine.training.data.clips import KIND_WEIGHTS, Clip, make_clip


class ClipPool:
    def __init__(
        self,
        seed: int,
        *,
        geometry: FrameGeometry,
        size: int,
        latent_frames: int,
        capacity: int,
        refresh_every: int = 1,
        transform: Callable[[Clip], Any] | None = None,
        kind_weights: tuple[float, float, float] = KIND_WEIGHTS,
    ):
        self.seed, self.geometry, self.size = seed, geometry, size
        self.latent_frames, self.capacity = latent_frames, capacity
        self.refresh_every = refresh_every  # replace one clip every this many samples
        self.samples = 0
        self.transform = transform  # e.g. encode to latents; default: keep the video as bytes
        self.kind_weights = kind_weights
        self.rng = np.random.default_rng(seed)
        self.made = 0
        self.clips: list[Any] = []

    def _make(self) -> Any:
        clip = make_clip(
            self.seed,
            self.made,
            geometry=self.geometry,
            size=self.size,
            latent_frames=self.latent_frames,
            kind_weights=self.kind_weights,
        )
        self.made += 1
        if self.transform is not None:
            return self.transform(clip)
        return Clip(**{**clip.__dict__, "video": as_uint8(clip.video)})

    def sample(self, batch: int) -> list[Any]:
        """batch clips (video as uint8 [T, H, W, 3], or transformed); grows the pool, then
        replaces its oldest clip every refresh_every samples."""
        while len(self.clips) < min(self.capacity, batch):
            self.clips.append(self._make())
        if len(self.clips) < self.capacity:
            self.clips.append(self._make())
        elif self.samples % self.refresh_every == 0:
            self.clips[self.made % self.capacity] = self._make()
        self.samples += 1
        picks = self.rng.choice(len(self.clips), size=batch, replace=False)
        return [self.clips[i] for i in picks]
