"""Test doubles for renders: a tone to speak, and an engine that reports each chunk it is
given (to stop or interrupt a render at a chosen chunk)."""

from __future__ import annotations

import numpy as np


def tone(seconds: float, rate: int, hz: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


class SpyEngine:
    """An engine whose runtime calls `on_submit` before each chunk it is given."""

    def __init__(self, engine, *, on_submit):
        self._engine, self._on_submit = engine, on_submit

    def __getattr__(self, name):
        return getattr(self._engine, name)

    @property
    def runtime(self):
        spy = self

        class Runtime:
            def __getattr__(self, name):
                return getattr(spy._engine.runtime, name)

            def submit(self, *inputs):
                spy._on_submit()
                return spy._engine.runtime.submit(*inputs)

        return Runtime()
