"""The engine a process builds once and every avatar stream of that process shares."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from avatar_engine import (
    DisaggregatedRuntime,
    EmbeddedModel,
    EngineSpec,
    FrameGeometry,
    LocalRuntime,
    Preset,
    ReferenceDecoder,
    Runtime,
    SceneConditioning,
    SpeechEncoder,
    WanVAE,
    build_encoder,
    fit_image,
    scene_from_image,
)

logger = logging.getLogger(__name__)

RuntimeKind = Literal["local", "disaggregated"]
FaceBox = tuple[float, float, float, float]  # (x0, y0, x1, y1), fractions of the frame


@dataclass
class AvatarEngine:
    """A runtime (weights loaded, warmed up) plus what turns speech and pictures into its inputs.

    The runtime serves one stream at a time: a generator claims the engine for its lifetime.
    """

    runtime: Runtime
    preset: Preset
    encoder: SpeechEncoder  # speech -> per-video-frame features, on the CPU
    geometry: FrameGeometry  # samples <-> video frames <-> latent frames <-> chunks
    vae: WanVAE  # its encoder makes reference latents from pictures
    reference_decoder: ReferenceDecoder | None = None  # the runtime's, where it has one: the
    # detail the canvas restores is measured against its frames
    stream_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def fps(self) -> int:
        return self.preset.stream.fps

    def scene(
        self, image: torch.Tensor | np.ndarray, face_boxes: Sequence[FaceBox]
    ) -> SceneConditioning:
        """The scene of one picture (any size; centre-cropped and resized to the output size)
        with one character per face box. Blocking (one VAE encode): call it from a thread in
        async code.

        Args:
            image: [H, W, 3] uint8 RGB.
        """
        if not face_boxes:
            raise ValueError("a scene needs at least one face box, one per character")
        pixels = np.array(image)  # a writable copy: arrays from PIL are read-only
        stream = self.preset.stream
        picture = fit_image(torch.from_numpy(pixels), (stream.output_height, stream.output_width))
        return scene_from_image(
            self.vae,
            self.preset.dit,
            self.preset.stream,
            picture,
            list(face_boxes),
            reference_decoder=self.reference_decoder,
        )

    def close(self) -> None:
        self.runtime.close()


def build_engine(
    spec: EngineSpec,
    *,
    runtime: RuntimeKind | Runtime = "local",
    device: torch.device | str = "cpu",
    audio_weights: str | Path | None = None,
    runtime_options: dict[str, Any] | None = None,
) -> AvatarEngine:
    """Build the runtime and the speech and picture front-ends of one preset.

    Args:
        spec: the preset and its DiT/VAE weights (random weights from spec.seed when none).
        runtime: "local" (DiT then decode on `device`), "disaggregated" (DiT and decoder
            ranks in their own processes; runtime_options go to DisaggregatedRuntime), or a
            Runtime already built for this spec.
        audio_weights: the speech encoder's weights: a safetensors file of the mel encoder's
            state dict, or the local wav2vec2 checkpoint directory for wav2vec2 presets. None:
            the mel encoder starts from spec.seed (tests, benchmarks).
    """
    preset = spec.preset
    geometry = FrameGeometry.of_preset(preset)
    encoder = _build_encoder(preset, geometry, audio_weights, seed=spec.seed)
    built = _build_runtime(spec, runtime, device, runtime_options or {})
    try:
        vae = getattr(built, "vae", None)  # LocalRuntime's own VAE on the CPU: share it
        reference_decoder = getattr(built, "reference_decoder", None)  # and its decoder
        if not isinstance(vae, WanVAE) or vae.conv1.weight.device.type != "cpu":
            vae = spec.build_vae("cpu")
            reference_decoder = spec.build_reference_decoder("cpu")
    except BaseException:
        if built is not runtime:  # ours to close; a runtime passed in stays the caller's
            built.close()
        raise
    logger.info(
        "avatar engine ready",
        extra={"preset": preset.name, "runtime": type(built).__name__, "fps": preset.stream.fps},
    )
    return AvatarEngine(
        runtime=built,
        preset=preset,
        encoder=encoder,
        geometry=geometry,
        vae=vae,
        reference_decoder=reference_decoder,
    )


def load_engine(
    *, device: str = "cpu", runtime: RuntimeKind = "local", model: EmbeddedModel | None = None
) -> AvatarEngine:
    """The embedded model's engine (or an exported model's), built once per process.

    Raises:
        FileNotFoundError: the model's weight files are missing, naming them.
    """
    model = (model or EmbeddedModel()).check()
    return build_engine(model.spec(), runtime=runtime, device=device, audio_weights=model.audio)


def _build_runtime(
    spec: EngineSpec,
    runtime: RuntimeKind | Runtime,
    device: torch.device | str,
    options: dict[str, Any],
) -> Runtime:
    if isinstance(runtime, Runtime):
        if runtime.stream != spec.preset.stream:
            raise ValueError("the runtime given streams another preset than the spec's")
        return runtime
    if runtime == "local":
        return LocalRuntime(spec, device=device, **options)
    if runtime == "disaggregated":
        return DisaggregatedRuntime(spec, **options)
    raise ValueError(f"unknown runtime {runtime!r}; use 'local' or 'disaggregated'")


def _build_encoder(
    preset: Preset, geometry: FrameGeometry, weights: str | Path | None, *, seed: int
) -> SpeechEncoder:
    if preset.audio.encoder == "wav2vec2":
        return build_encoder(preset.audio, geometry, wav2vec2_path=weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same random encoder in every process of this spec
        return build_encoder(preset.audio, geometry, weights=weights)
