"""A micro engine (chunks in tens of ms on a CPU), speech-like audio and a spying runtime."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest
import torch
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd

from app.avatar.engine import AvatarEngine, build_engine
from app.avatar.generator import AvatarVideoGenerator
from avatar_engine.chunks import VideoChunk
from avatar_engine.config import AudioConfig, Preset, VAEConfig
from avatar_engine.runtime.base import Runtime
from avatar_engine.runtime.spec import EngineSpec
from avatar_engine.scene import SceneConditioning
from tests.conftest import MICRO_STREAM, micro_dit

CFG = micro_dit()
MICRO = Preset(
    name="micro",
    dit=CFG,
    stream=MICRO_STREAM,
    audio=AudioConfig(feature_dim=CFG.audio_feature_dim),
    vae=VAEConfig.from_name("tiny"),
)
SPEC = EngineSpec(preset=MICRO, seed=7)
RATE = 24000  # what OpenAI Realtime sends
FPS = MICRO_STREAM.fps
PER_FRAME = RATE // FPS
BOXES = [(0.0, 0.1, 0.5, 0.9), (0.5, 0.1, 1.0, 0.9)]  # two faces side by side


class SpyRuntime(Runtime):
    """Records what each chunk was submitted with, then lets the real runtime make it."""

    def __init__(self, inner: Runtime):
        self.inner, self.stream = inner, inner.stream
        self.speaking: list[torch.Tensor] = []  # per chunk [1, K] bool
        self.features: list[torch.Tensor] = []  # per chunk [1, K, Fc, W, Da]

    def start_session(self, scene: SceneConditioning, *, seed: int = 0) -> None:
        self.speaking.clear()
        self.features.clear()
        self.inner.start_session(scene, seed=seed)

    def submit(self, features: torch.Tensor, speaking: torch.Tensor) -> None:
        self.features.append(features.clone())
        self.speaking.append(speaking.clone())
        self.inner.submit(features, speaking)

    def receive(self, timeout: float | None = None) -> VideoChunk:
        return self.inner.receive(timeout)

    def end_session(self) -> None:
        self.inner.end_session()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="package")
def engine():
    built = build_engine(SPEC)
    yield built
    built.close()


@pytest.fixture
def spy_engine(engine) -> AvatarEngine:
    """The same engine, its runtime watched."""
    return dataclasses.replace(engine, runtime=SpyRuntime(engine.runtime))


def picture(height: int = 90, width: int = 120, seed: int = 0) -> np.ndarray:
    """[H, W, 3] uint8: a gradient with some texture."""
    gen = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (height + width)], -1)
    return (base + gen.integers(0, 40, base.shape)).clip(0, 255).astype(np.uint8)


def scene_of(engine: AvatarEngine, characters: int = 1) -> SceneConditioning:
    return engine.scene(picture(), BOXES[:characters])


def speech(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """[N] int16: noise shaped like syllables, never exactly zero for long."""
    gen = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (8000 * envelope * gen.standard_normal(len(t))).clip(-32767, 32767).astype(np.int16)


def audio_frames(samples: np.ndarray, rate: int = RATE, ms: int = 20) -> list[rtc.AudioFrame]:
    step = rate * ms // 1000
    return [
        rtc.AudioFrame(samples[i : i + step].tobytes(), rate, 1, len(samples[i : i + step]))
        for i in range(0, len(samples), step)
    ]


async def push_segment(gen: AvatarVideoGenerator, samples: np.ndarray, rate: int = RATE) -> None:
    """A whole reply at once, as an LLM bursts it, then its end."""
    for frame in audio_frames(samples, rate):
        await gen.push_audio(frame)
    await gen.push_audio(AudioSegmentEnd())


def pcm(frame: rtc.AudioFrame) -> np.ndarray:
    return np.frombuffer(frame.data, dtype=np.int16)


def segment_runs(frames) -> list[list]:
    """The frames of each segment, in order (a run of in_segment frames ends at segment_end)."""
    runs, current = [], []
    for f in frames:
        if f.in_segment:
            current.append(f)
            if f.segment_end:
                runs.append(current)
                current = []
        else:
            assert not current, f"segment audio stops at frame {f.index} before its end"
    return runs


def assert_plays_exactly(run_audio: np.ndarray, pushed: np.ndarray, per_frame: int) -> None:
    """The segment's audio is what was pushed, then zeros shorter than one frame."""
    assert len(pushed) <= len(run_audio) < len(pushed) + per_frame
    assert np.array_equal(run_audio[: len(pushed)], pushed)
    assert not run_audio[len(pushed) :].any()


def run(coro, timeout_s: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def consume(gen: AvatarVideoGenerator, count: int, on_frame=None) -> list:
    """Take `count` frames as fast as they come (a simulated clock: frame i is at i/fps)."""
    frames = []
    async for frame in gen.frames():
        frames.append(frame)
        if on_frame is not None:
            await on_frame(frame)
        if len(frames) == count:
            return frames
    raise AssertionError("the generator stopped")
