"""The streaming forward with per-step caches equals the sparse-causal clip forward, and a
chunk's output does not depend on how long the stream has run."""

from __future__ import annotations

import torch

from avatar_engine.cache import StreamCache
from avatar_engine.model.window import ChunkRole, ClipWindow, StreamingWindow, slot_tables
from avatar_engine.sampling import interpolate, model_timestep, velocity_from_output
from avatar_engine.session import StreamSession
from tests.conftest import (
    MICRO_STREAM,
    audio_for,
    make_scene,
    micro_dit,
    random_features,
    random_model,
    relative_error,
)

CHUNKS = 7
FC = MICRO_STREAM.chunk_latent_frames


def _clip_cond(scene, cfg):
    first = scene.reference_channels(MICRO_STREAM, cfg.temporal_stride, first=True)
    rest = scene.reference_channels(MICRO_STREAM, cfg.temporal_stride, first=False)
    return torch.cat([first] + [rest] * (CHUNKS - 1), dim=2)  # [B, C, CHUNKS*Fc, h, w]


def _speaking(chunks: int) -> torch.Tensor:
    """[1, 2, chunks*Fc]: character 0 speaks in even chunks, character 1 in odd ones."""
    per_chunk = torch.tensor([[c % 2 == 0, c % 2 == 1] for c in range(chunks)]).T[None]
    return per_chunk.repeat_interleave(FC, dim=2)


def test_streaming_equals_sparse_causal_clip():
    cfg = micro_dit()
    model = random_model(cfg)
    scene = make_scene(cfg, MICRO_STREAM)
    frames = CHUNKS * FC
    x = torch.randn(1, cfg.out_dim, frames, MICRO_STREAM.latent_h, MICRO_STREAM.latent_w)
    cond = _clip_cond(scene, cfg)
    features, speaking = random_features(cfg, frames), _speaking(CHUNKS)
    timestep = torch.tensor([700.0])
    with torch.no_grad():
        clip = model.forward_clip(
            x,
            cond,
            timestep,
            context=scene.context,
            audio=audio_for(scene, features, speaking),
            window=ClipWindow.SPARSE_CAUSAL,
        )
        context_kv = model.context_kv(scene.context)
        slots = slot_tables(cfg, FC, MICRO_STREAM.grid_h, MICRO_STREAM.grid_w, x.device)
        cache = StreamCache(cfg, MICRO_STREAM, batch=1, device="cpu", dtype=torch.float32)
        for c in range(CHUNKS):
            part = slice(c * FC, (c + 1) * FC)
            audio = model.audio_context(
                audio_for(scene, features[:, :, part], speaking[:, :, part])
            )
            window = StreamingWindow(ChunkRole.of(c), slots, cache.steps[0])
            out = model.forward_chunk(
                x[:, :, part],
                cond[:, :, part],
                timestep,
                context_kv=context_kv,
                audio=audio,
                window=window,
            )
            assert relative_error(out, clip[:, :, part]) <= 1e-5, f"chunk {c}"
    # The sparse pattern matters: the bidirectional clip differs.
    with torch.no_grad():
        full = model.forward_clip(
            x,
            cond,
            timestep,
            context=scene.context,
            audio=audio_for(scene, features, speaking),
            window=ClipWindow.BIDIRECTIONAL,
        )
    assert relative_error(full, clip) > 1e-2


def test_session_two_steps_equals_clip_sampling():
    """The whole 2-step session equals the same sampler run on the clip forward."""
    cfg = micro_dit()
    model = random_model(cfg)
    scene = make_scene(cfg, MICRO_STREAM)
    features, speaking = random_features(cfg, CHUNKS * FC), _speaking(CHUNKS)
    session = StreamSession(model, MICRO_STREAM, scene, seed=5)
    chunks = [
        session.next_chunk(features[:, :, c * FC : (c + 1) * FC], speaking[:, :, c * FC])
        for c in range(CHUNKS)
    ]
    streamed = torch.cat([c.latents for c in chunks], dim=2)

    # Replay the session's noise: per chunk, the initial noise then one re-noise per step.
    gen = torch.Generator().manual_seed(5)
    shape = session.latent_shape
    noise = [[torch.randn(shape, generator=gen) for _ in range(2)] for _ in range(CHUNKS)]
    t0, t1 = MICRO_STREAM.denoise_times
    cond = _clip_cond(scene, cfg)
    audio = audio_for(scene, features, speaking)

    def clip_data(x, t):
        with torch.no_grad():
            out = model.forward_clip(
                x,
                cond,
                torch.tensor([model_timestep(t)]),
                context=scene.context,
                audio=audio,
                window=ClipWindow.SPARSE_CAUSAL,
            )
        return x + (1 - t) * velocity_from_output(out)

    data = clip_data(torch.cat([n[0] for n in noise], dim=2), t0)
    data = clip_data(interpolate(data, torch.cat([n[1] for n in noise], dim=2), t1), t1)
    assert relative_error(streamed, data) <= 1e-5
    assert [c.first_frame for c in chunks] == [0, 9, 21, 33, 45, 57, 69]
    assert [c.num_frames for c in chunks] == [9] + [12] * (CHUNKS - 1)


def test_chunk_3_equals_chunk_3000():
    """Same cache contents and inputs give the identical chunk after 3000 chunks of stream."""
    cfg = micro_dit(num_layers=1)
    model = random_model(cfg)
    scene = make_scene(cfg, MICRO_STREAM)
    features = random_features(cfg, FC)
    talk = torch.tensor([[True, False]])

    short = StreamSession(model, MICRO_STREAM, scene, seed=1)
    for _ in range(3):
        short.next_chunk(features, talk)
    cache_at_3 = short.cache.storage.clone()
    rng_at_3 = short.generator.get_state()
    chunk_3 = short.next_chunk(features, talk)

    long = StreamSession(model, MICRO_STREAM, scene, seed=2)
    storage = long.cache.storage.data_ptr()
    for _ in range(3000):
        long.next_chunk(features, talk)
    assert long.cache.storage.data_ptr() == storage  # nothing reallocated or grown
    with torch.inference_mode():  # the session's caches are inference tensors
        long.cache.storage.copy_(cache_at_3)
    long.generator.set_state(rng_at_3)
    chunk_3000 = long.next_chunk(features, talk)
    assert chunk_3000.index == 3000
    assert torch.equal(chunk_3000.latents, chunk_3.latents)


def test_seed_determines_the_stream():
    cfg = micro_dit(num_layers=1)
    model = random_model(cfg)
    scene = make_scene(cfg, MICRO_STREAM)
    features, talk = random_features(cfg, FC), torch.tensor([[True, False]])

    def stream(seed):
        session = StreamSession(model, MICRO_STREAM, scene, seed=seed)
        return torch.cat([session.next_chunk(features, talk).latents for _ in range(3)])

    assert torch.equal(stream(7), stream(7))
    assert not torch.allclose(stream(7), stream(8))
