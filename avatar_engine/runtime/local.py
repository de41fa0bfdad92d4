"""DiT then decode, one after the other, on one device."""

from __future__ import annotations

from collections import deque

import torch

from avatar_engine.chunks import VideoChunk
from avatar_engine.runtime.base import Runtime
from avatar_engine.runtime.spec import EngineSpec
from avatar_engine.runtime.warmup import blank_scene, warm_up_decoder, warm_up_dit
from avatar_engine.scene import SceneConditioning
from avatar_engine.session import StreamSession


class LocalRuntime(Runtime):
    """Start-up is explicit, as the disaggregated ranks': build the DiT and the VAE (and the
    reference decoder, where the spec has one) and load their weights (EngineSpec), then warm
    them up (warmup=False skips it)."""

    def __init__(
        self, spec: EngineSpec, *, device: torch.device | str = "cpu", warmup: bool = True
    ):
        self.spec, self.stream = spec, spec.preset.stream
        self.model = spec.build_dit(device)
        self.vae = spec.build_vae(device)
        self.reference_decoder = spec.build_reference_decoder(device)
        if warmup:
            warm_up_dit(StreamSession(self.model, self.stream, blank_scene(spec)), spec)
            warm_up_decoder(self.vae, spec, self.reference_decoder)
        self.session: StreamSession | None = None
        self.ready: deque[VideoChunk] = deque()

    def start_session(self, scene: SceneConditioning, *, seed: int = 0) -> None:
        self.ready.clear()
        self.session = StreamSession(
            self.model,
            self.stream,
            scene,
            seed=seed,
            vae=self.vae,
            reference_decoder=self.reference_decoder,
        )

    def submit(self, features: torch.Tensor, speaking: torch.Tensor) -> None:
        if self.session is None:
            raise RuntimeError("start_session() first")
        self.ready.append(self.session.next_frames(features, speaking))

    def receive(self, timeout: float | None = None) -> VideoChunk:
        if not self.ready:
            raise RuntimeError("no chunk is pending: submit() one first")
        return self.ready.popleft()

    def end_session(self) -> None:
        self.session = None
        self.ready.clear()

    def close(self) -> None:
        self.end_session()
