"""build_engine: the runtime and front-ends of one preset; scenes from any picture; speech
encoder weights checked by name; one stream per engine at a time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from app.avatar.engine import build_engine
from app.avatar.generator import AvatarVideoGenerator
from avatar_engine.runtime.local import LocalRuntime
from avatar_engine.weights import WeightLoadError
from tests.app.avatar.conftest import (
    BOXES,
    MICRO,
    PER_FRAME,
    SPEC,
    assert_plays_exactly,
    pcm,
    picture,
    push_segment,
    scene_of,
    segment_runs,
    speech,
)


def test_engine_parts_fit_the_preset(engine):
    assert isinstance(engine.runtime, LocalRuntime)
    assert engine.vae is engine.runtime.vae  # one VAE for encoding pictures and decoding
    assert engine.fps == MICRO.stream.fps
    assert engine.geometry.samples_per_frame == MICRO.audio.sample_rate // MICRO.stream.fps
    wave = torch.zeros(1, 4 * engine.geometry.samples_per_frame)
    assert engine.encoder(wave).shape == (1, 4, MICRO.audio.feature_dim)


def test_a_scene_from_a_picture_of_any_size(engine):
    scene = engine.scene(picture(height=200, width=90), BOXES)
    scene.validate(MICRO.dit, MICRO.stream)
    assert scene.num_characters == 2
    assert scene.reference_latent.shape == (1, MICRO.vae.z_dim, 8, 8)
    assert scene.face_masks[0, 0, :, :2].all() and not scene.face_masks[0, 0, :, 2:].any()
    with pytest.raises(ValueError, match="at least one face box"):
        engine.scene(picture(), [])


def test_unknown_runtime_is_named():
    with pytest.raises(ValueError, match="unknown runtime 'gpu'; use 'local' or 'disaggregated'"):
        build_engine(SPEC, runtime="gpu")


def test_speech_encoder_weights_load_and_mismatches_are_named(engine, tmp_path):
    state = {k: v.clone() + 1.0 for k, v in engine.encoder.state_dict().items()}
    save_file(state, tmp_path / "audio.safetensors")
    built = build_engine(SPEC, runtime=engine.runtime, audio_weights=tmp_path / "audio.safetensors")
    for name, tensor in built.encoder.state_dict().items():
        assert torch.equal(tensor, state[name])
    del state[next(iter(state))]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(WeightLoadError, match=r"missing keys \(1\).*unexpected keys \(1\)"):
        build_engine(SPEC, runtime=engine.runtime, audio_weights=tmp_path / "bad.safetensors")


def test_one_stream_per_engine_at_a_time(engine):
    async def two_streams() -> None:
        first = AvatarVideoGenerator(engine=engine, scene=scene_of(engine))
        second = AvatarVideoGenerator(engine=engine, scene=scene_of(engine))
        frames = first.frames()
        await anext(frames)
        with pytest.raises(RuntimeError, match="already streaming for another generator"):
            await anext(second.frames())
        await frames.aclose()
        await first.aclose()
        third = AvatarVideoGenerator(engine=engine, scene=scene_of(engine))
        await anext(third.frames())  # the engine is free again
        await third.aclose()

    asyncio.run(asyncio.wait_for(two_streams(), 30))


def test_a_disaggregated_engine_streams_the_same_way(engine):
    """DiT and decoder ranks in their own processes; two chunks of lead so they overlap."""
    disaggregated = build_engine(
        SPEC, runtime="disaggregated", runtime_options={"dit_threads": 1, "warmup": False}
    )
    reply = speech(1.0, seed=30)

    async def session() -> list:
        gen = AvatarVideoGenerator(
            engine=disaggregated,
            scene=scene_of(engine),
            lead_frames=2 * MICRO.stream.video_frames_per_chunk,
        )
        await push_segment(gen, reply)
        frames = []
        try:
            async for frame in gen.frames():
                frames.append(frame)
                if len(frames) == 80:
                    return frames
        finally:
            await gen.aclose()

    try:
        frames = asyncio.run(asyncio.wait_for(session(), 60))
    finally:
        disaggregated.close()
    assert [f.index for f in frames] == list(range(80))
    (segment,) = segment_runs(frames)
    assert_plays_exactly(np.concatenate([pcm(f.audio) for f in segment]), reply, PER_FRAME)
    assert all(f.speaker == 0 for f in segment)
    assert frames[-1].speaker is None
