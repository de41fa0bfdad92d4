"""Local and disaggregated runtimes stream the same frames; a dead or failing rank ends the
runtime with its error, quickly, and no process outlives it."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from avatar_engine.canvas import Canvas, Window
from avatar_engine.config import AudioConfig, Preset, VAEConfig
from avatar_engine.runtime import local as local_runtime
from avatar_engine.runtime.disaggregated import DisaggregatedRuntime
from avatar_engine.runtime.local import LocalRuntime
from avatar_engine.runtime.spec import EngineSpec
from avatar_engine.scene import SceneConditioning
from avatar_engine.vae.reference_decoder import ReferenceDecoder, StillPicture
from tests.conftest import MICRO_STREAM, make_scene, micro_dit, random_features

CHUNKS = 4  # sink, first, two steady: the caches roll over
CFG = micro_dit()
SPEC = EngineSpec(
    preset=Preset(
        name="micro",
        dit=CFG,
        stream=MICRO_STREAM,
        audio=AudioConfig(feature_dim=CFG.audio_feature_dim),
        vae=VAEConfig.from_name("tiny"),
    ),
    seed=7,
)
SCENE = make_scene(CFG, MICRO_STREAM, characters=2)
FEATURES = random_features(CFG, CHUNKS * 3, seed=2)


def speaking(chunk: int) -> torch.Tensor:
    return torch.tensor([[chunk % 2 == 0, chunk % 2 == 1]])


def stream(runtime, seed: int = 5, scene: SceneConditioning = SCENE) -> list:
    runtime.start_session(scene, seed=seed)
    for c in range(CHUNKS):
        runtime.submit(FEATURES[:, :, 3 * c : 3 * c + 3], speaking(c))
    chunks = [runtime.receive(timeout=60) for _ in range(CHUNKS)]
    runtime.end_session()
    return chunks


def children() -> list[int]:
    """Live child processes of this test process."""
    mine = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            mine.append(int(stat.parent.name))
    return mine


def local_stream(scene: SceneConditioning = SCENE, spec: EngineSpec = SPEC) -> list:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank runs: the same arithmetic, the same bits
    try:
        with LocalRuntime(spec) as runtime:
            return stream(runtime, scene=scene)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_chunks():
    return local_stream()


@pytest.fixture(autouse=True)
def no_leftover_processes():
    before = set(children())
    yield
    deadline = time.monotonic() + 5
    while set(children()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(children()) - before == set(), "a runtime process outlived its runtime"


def test_local_start_up_warms_up_without_changing_a_stream(local_chunks, monkeypatch):
    """LocalRuntime warms its DiT and decoder up when built, as the ranks do, on a scene of its
    own: a stream's frames are a cold runtime's, bit for bit."""
    warmed = []
    for part in ("warm_up_dit", "warm_up_decoder"):
        real = getattr(local_runtime, part)
        monkeypatch.setattr(
            local_runtime, part, lambda *a, part=part, real=real: warmed.append(part) or real(*a)
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as local_chunks were made
    try:
        LocalRuntime(SPEC).close()
        assert warmed == ["warm_up_dit", "warm_up_decoder"]
        with LocalRuntime(SPEC, warmup=False) as cold:
            cold_chunks = stream(cold)
    finally:
        torch.set_num_threads(threads)
    assert warmed == ["warm_up_dit", "warm_up_decoder"]  # nothing more for a cold one
    for got, want in zip(cold_chunks, local_chunks, strict=True):
        assert torch.equal(got.frames, want.frames)


def test_local_runtime_frames_and_timestamps(local_chunks):
    assert [c.index for c in local_chunks] == list(range(CHUNKS))
    assert [c.first_frame for c in local_chunks] == [0, 9, 21, 33]
    counts = [c.frames.shape[1] for c in local_chunks]
    assert counts == [9, 12, 12, 12]  # 1 + 4·(3 − 1) for chunk 0, 4·3 after
    pts = torch.cat([c.pts for c in local_chunks])
    assert torch.allclose(pts, torch.arange(len(pts), dtype=torch.float64) / MICRO_STREAM.fps)
    frame = local_chunks[0].frames
    assert frame.dtype == torch.uint8 and frame.shape[2:] == (64, 64, 3)
    assert all(torch.equal(c.speaking, speaking(c.index)) for c in local_chunks)


BIG = replace(
    SPEC,
    preset=replace(
        SPEC.preset,
        stream=replace(
            MICRO_STREAM, output_height=4 * MICRO_STREAM.height, output_width=4 * MICRO_STREAM.width
        ),
    ),
)  # output frames at 4× the model's: a canvas larger than a socket's buffer


def with_detail(local_chunks) -> SceneConditioning:
    """SCENE with reference detail that its streams' frames partly still show, at BIG's output
    size (a decoder rank that read its scene at the wrong moment would hang the stream's
    start)."""
    decoded = local_chunks[1].frames[:, 0].float()  # [B, h, w, 3]
    size = (BIG.preset.stream.output_height, BIG.preset.stream.output_width)
    up = torch.nn.functional.interpolate(decoded.permute(0, 3, 1, 2), size=size, mode="nearest")
    noise = torch.randn(up.shape, generator=torch.Generator().manual_seed(1)) * 30
    picture = (up + noise).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    window = Window(0, 0, *size)
    return replace(SCENE, canvas=Canvas.of(picture, window, decoded.shape[1:3], decoded))


def test_both_runtimes_restore_the_reference_detail(local_chunks):
    scene = with_detail(local_chunks)
    local = local_stream(scene, BIG)
    with DisaggregatedRuntime(BIG, dit_threads=1, decoder_threads=1) as runtime:
        disaggregated = stream(runtime, scene=scene)
    for plain, *restored in zip(local_chunks, local, disaggregated, strict=True):
        want = scene.canvas.present(plain).frames
        assert not torch.equal(want, plain.frames)
        assert all(torch.equal(got.frames, want) for got in restored)


def test_both_runtimes_draw_with_a_reference_decoder(local_chunks, tmp_path):
    """Where the spec names a reference decoder, both runtimes' frames are its, drawn against
    the scene's picture (the decoder rank gets it with each stream)."""
    torch.manual_seed(3)
    decoder = ReferenceDecoder(SPEC.preset.vae)
    torch.nn.init.normal_(decoder.out.weight, std=0.05)
    weights = tmp_path / "reference_decoder.safetensors"
    save_file(decoder.state_dict(), str(weights))
    spec = replace(SPEC, reference_decoder_weights=(str(weights),))
    gen = torch.Generator().manual_seed(4)
    pixels = torch.randint(0, 256, (1, 64, 64, 3), generator=gen, dtype=torch.uint8)
    scene = replace(SCENE, picture=StillPicture(pixels, torch.randn(1, 16, 8, 8, generator=gen)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with LocalRuntime(spec) as runtime:
            local = stream(runtime, scene=scene)
    finally:
        torch.set_num_threads(threads)
    with DisaggregatedRuntime(spec, dit_threads=1, decoder_threads=1) as runtime:
        disaggregated = stream(runtime, scene=scene)
    for got, want, plain in zip(disaggregated, local, local_chunks, strict=True):
        assert torch.equal(got.frames, want.frames)
        assert not torch.equal(want.frames, plain.frames)  # not the VAE decoder's frames


def test_disaggregated_equals_local(local_chunks):
    with DisaggregatedRuntime(SPEC, dit_threads=1, decoder_threads=1) as runtime:
        first = stream(runtime)
        second = stream(runtime)  # a second session on the same ranks starts afresh
    for chunks in (first, second):
        for got, want in zip(chunks, local_chunks, strict=True):
            assert (got.index, got.first_frame) == (want.index, want.first_frame)
            assert torch.equal(got.frames, want.frames)
            assert torch.equal(got.pts, want.pts)
            assert torch.equal(got.speaking, want.speaking)


def test_sequence_parallel_ranks_equal_one(local_chunks):
    with DisaggregatedRuntime(SPEC, dit_ranks=2, dit_threads=1, decoder_threads=1) as runtime:
        chunks = stream(runtime)
    for got, want in zip(chunks, local_chunks, strict=True):
        # latents agree to ~1e-7; a pixel may round the other way
        diff = (got.frames.int() - want.frames.int()).abs()
        assert diff.max() <= 1 and diff.float().mean() < 1e-3


def test_killing_the_decoder_raises_quickly():
    runtime = DisaggregatedRuntime(SPEC, dit_threads=1, decoder_threads=1, warmup=False)
    try:
        runtime.start_session(SCENE, seed=0)
        runtime.submit(FEATURES[:, :, :3], speaking(0))
        runtime.receive(timeout=60)
        os.kill(runtime.procs[runtime.settings.decoder_rank].pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="decoder was killed by SIGKILL"):
            for c in range(1, 50):
                runtime.submit(FEATURES[:, :, :3], speaking(c))
                runtime.receive(timeout=10)
        assert time.monotonic() - start < 10
        assert all(proc.poll() is not None for proc in runtime.procs)
        with pytest.raises(RuntimeError, match="closed"):
            runtime.submit(FEATURES[:, :, :3], speaking(0))
    finally:
        runtime.close()


def test_a_failing_rank_reports_its_error():
    with DisaggregatedRuntime(SPEC, dit_threads=1, decoder_threads=1, warmup=False) as runtime:
        runtime.start_session(SCENE, seed=0)
        runtime.submit(FEATURES[:, :1, :3], speaking(0))  # one character's features for two
        with pytest.raises(RuntimeError, match=r"DiT rank 0 failed:(.|\n)*ValueError: features"):
            runtime.receive(timeout=30)


@pytest.mark.parametrize("runtime_class", [LocalRuntime, DisaggregatedRuntime])
def test_sessions_are_used_in_order(runtime_class, local_chunks):
    options = {} if runtime_class is LocalRuntime else {"dit_threads": 1, "warmup": False}
    with runtime_class(SPEC, **options) as runtime:
        with pytest.raises(RuntimeError, match="start_session"):
            runtime.submit(FEATURES[:, :, :3], speaking(0))
        runtime.end_session()  # nothing to end: harmless
        runtime.start_session(SCENE, seed=5)
        runtime.submit(FEATURES[:, :, :3], speaking(0))
        # a new session while one runs ends it first (its pending frames are dropped)
        runtime.start_session(SCENE, seed=5)
        runtime.submit(FEATURES[:, :, :3], speaking(0))
        chunk = runtime.receive(timeout=60)
    assert chunk.index == 0 and chunk.frames.shape == local_chunks[0].frames.shape
    with pytest.raises(RuntimeError, match="no chunk is pending|closed"):
        runtime.receive(timeout=1)


def test_a_rank_failing_at_start_up_is_reported(tmp_path):
    missing = str(tmp_path / "missing.safetensors")
    spec = EngineSpec(preset=SPEC.preset, dit_weights=(missing,))
    start = time.monotonic()
    with pytest.raises(
        RuntimeError, match=r"DiT rank 0 failed:(.|\n)*missing.safetensors does not"
    ):
        DisaggregatedRuntime(spec, dit_threads=1, warmup=False)
    assert time.monotonic() - start < 30
