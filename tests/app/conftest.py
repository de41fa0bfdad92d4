"""An avatar engine small enough to stream in real time on a CPU, for conversation tests."""

from __future__ import annotations

import pytest

from app.avatar import AvatarEngine, build_engine
from avatar_engine.config import AudioConfig, Preset, VAEConfig
from avatar_engine.runtime.spec import EngineSpec
from tests.conftest import MICRO_STREAM, micro_dit


def build_micro_engine() -> AvatarEngine:
    dit = micro_dit()
    preset = Preset(
        "micro",
        dit=dit,
        stream=MICRO_STREAM,
        audio=AudioConfig(feature_dim=dit.audio_feature_dim),
        vae=VAEConfig.from_name("tiny"),
    )
    return build_engine(EngineSpec(preset=preset, seed=3))


@pytest.fixture(scope="package")
def micro_engine() -> AvatarEngine:
    engine = build_micro_engine()
    yield engine
    engine.close()
