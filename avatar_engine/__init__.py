"""Pure-torch streaming engine: the audio-driven DiT, its caches, sampler and chunk loop.

What the other packages (llm_bridge, app, web) may use is named here, and they import it from
here; the layer test holds them to it. The `avatar` commands (commands/) may reach further:
training, benchmarks and the GPU check are theirs alone.
"""

from avatar_engine.audio.encoder import SpeechEncoder, build_encoder
from avatar_engine.audio.feature_stream import ChunkFeatures, SpeechFeatureStream
from avatar_engine.audio.geometry import FrameGeometry
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
    "Runtime",
    "SceneConditioning",
    "SpeechEncoder",
    "SpeechFeatureStream",
    "StreamingResampler",
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
