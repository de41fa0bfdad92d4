"""Pure-torch streaming engine: the audio-driven DiT, its caches, sampler and chunk loop.

What the other packages (llm_bridge, app, web) may use is named here, and they import it from
here; the layer test holds them to it. The `avatar` commands (commands/) may reach further:
training, benchmarks and the GPU check are theirs alone.

Each name is imported from its home module on first use, so importing one part of the engine
(a rank's process, the GPU check, which runs with torch alone) loads only that part.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from avatar_engine.audio.encoder import SpeechEncoder, build_encoder
    from avatar_engine.audio.feature_stream import ChunkFeatures, SpeechFeatureStream
    from avatar_engine.audio.geometry import FrameGeometry, Timeline
    from avatar_engine.audio.pcm import INT16_SCALE, MAX_RATE, MIN_RATE, to_mono
    from avatar_engine.audio.resample import StreamingResampler, resample
    from avatar_engine.audio.routing import route_to_speaker
    from avatar_engine.audio.turns import Turn, plan_turns
    from avatar_engine.chunks import LatentChunk, VideoChunk
    from avatar_engine.config import Preset
    from avatar_engine.embedded import EmbeddedModel
    from avatar_engine.framing import Portrait, detect_faces, photo_portrait
    from avatar_engine.runtime.base import Runtime
    from avatar_engine.runtime.disaggregated import DisaggregatedRuntime
    from avatar_engine.runtime.local import LocalRuntime
    from avatar_engine.runtime.spec import EngineSpec
    from avatar_engine.scene import (
        SceneConditioning,
        face_mask_from_box,
        fit_image,
        scene_from_image,
    )
    from avatar_engine.vae.model import WanVAE
    from avatar_engine.vae.reference_decoder import ReferenceDecoder

HOMES = {  # public name -> the module that defines it
    "build_encoder": "avatar_engine.audio.encoder",
    "ChunkFeatures": "avatar_engine.audio.feature_stream",
    "detect_faces": "avatar_engine.framing",
    "DisaggregatedRuntime": "avatar_engine.runtime.disaggregated",
    "EmbeddedModel": "avatar_engine.embedded",
    "EngineSpec": "avatar_engine.runtime.spec",
    "face_mask_from_box": "avatar_engine.scene",
    "fit_image": "avatar_engine.scene",
    "FrameGeometry": "avatar_engine.audio.geometry",
    "INT16_SCALE": "avatar_engine.audio.pcm",
    "LatentChunk": "avatar_engine.chunks",
    "LocalRuntime": "avatar_engine.runtime.local",
    "MAX_RATE": "avatar_engine.audio.pcm",
    "MIN_RATE": "avatar_engine.audio.pcm",
    "photo_portrait": "avatar_engine.framing",
    "plan_turns": "avatar_engine.audio.turns",
    "Portrait": "avatar_engine.framing",
    "Preset": "avatar_engine.config",
    "ReferenceDecoder": "avatar_engine.vae.reference_decoder",
    "resample": "avatar_engine.audio.resample",
    "route_to_speaker": "avatar_engine.audio.routing",
    "Runtime": "avatar_engine.runtime.base",
    "scene_from_image": "avatar_engine.scene",
    "SceneConditioning": "avatar_engine.scene",
    "SpeechEncoder": "avatar_engine.audio.encoder",
    "SpeechFeatureStream": "avatar_engine.audio.feature_stream",
    "StreamingResampler": "avatar_engine.audio.resample",
    "Timeline": "avatar_engine.audio.geometry",
    "to_mono": "avatar_engine.audio.pcm",
    "Turn": "avatar_engine.audio.turns",
    "VideoChunk": "avatar_engine.chunks",
    "WanVAE": "avatar_engine.vae.model",
}

__all__ = [
    "INT16_SCALE",
    "MAX_RATE",
    "MIN_RATE",
    "ChunkFeatures",
    "DisaggregatedRuntime",
    "EmbeddedModel",
    "EngineSpec",
    "FrameGeometry",
    "LatentChunk",
    "LocalRuntime",
    "Portrait",
    "Preset",
    "ReferenceDecoder",
    "Runtime",
    "SceneConditioning",
    "SpeechEncoder",
    "SpeechFeatureStream",
    "StreamingResampler",
    "Timeline",
    "Turn",
    "VideoChunk",
    "WanVAE",
    "build_encoder",
    "detect_faces",
    "face_mask_from_box",
    "fit_image",
    "photo_portrait",
    "plan_turns",
    "resample",
    "route_to_speaker",
    "scene_from_image",
    "to_mono",
]


def __getattr__(name: str) -> Any:
    if name not in HOMES:
        raise AttributeError(f"module 'avatar_engine' has no attribute {name!r}")
    return getattr(importlib.import_module(HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *HOMES])
