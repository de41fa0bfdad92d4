"""The one interface every runtime offers: callers do not care where the DiT and decoder run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

import torch

from avatar_engine.chunks import VideoChunk
from avatar_engine.config import StreamConfig
from avatar_engine.scene import SceneConditioning


class Runtime(ABC):
    """Streams one scene at a time: submit each chunk's audio conditioning, receive its frames
    in order. A runtime is built once per process (weights loaded, warmed up) and serves many
    sessions, one after another."""

    stream: StreamConfig

    @abstractmethod
    def start_session(self, scene: SceneConditioning, *, seed: int = 0) -> None:
        """Begin a stream of this scene; its conditioning is prepared once, here."""

    @abstractmethod
    def submit(self, features: torch.Tensor, speaking: torch.Tensor) -> None:
        """Queue the next chunk. Args: features [B, K, Fc, W, Da]; speaking [B, K] bool."""

    @abstractmethod
    def receive(self, timeout: float | None = None) -> VideoChunk:
        """The frames of the oldest submitted chunk not yet received (blocks up to timeout)."""

    @abstractmethod
    def end_session(self) -> None:
        """Finish the current stream (frames not yet received are dropped)."""

    @abstractmethod
    def close(self) -> None:
        """Release everything; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
