"""`avatar bench runtime`: time between chunks, end to end (DiT + decode + RGB frames), for
the single-process runtime and the disaggregated one, measured in alternating rounds of one
run so both see the same machine; and each stage alone, speech features included."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from avatar_engine.audio.encoder import build_encoder
from avatar_engine.audio.feature_stream import SpeechFeatureStream
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.benchmark import WARMUP, bench_inputs, sync
from avatar_engine.runtime.base import Runtime
from avatar_engine.runtime.spec import EngineSpec
from avatar_engine.session import StreamSession

IN_FLIGHT = 2  # chunks submitted ahead, as a real-time caller keeps the pipeline fed
SPEECH_RATE = 24000  # the audio LLM's output rate


@dataclass(frozen=True)
class RuntimeTimes:
    ttbc_s: float  # median time between consecutive chunks' frames, steady state
    first_chunk_s: float  # median time from session start to the first chunk's frames, alone


@dataclass(frozen=True)
class StageTimes:
    features_s: float | None  # mean speech-feature time per chunk from 24 kHz audio; None when
    # the preset's encoder needs a checkpoint (wav2vec2)
    dit_s: float  # median DiT time per chunk (all denoising steps), in-process
    decode_s: float  # median decode + RGB conversion per chunk, in-process
    canvas_s: float  # median time per chunk to make the frames people see (canvas.py)

    @property
    def total_s(self) -> float:
        return (self.features_s or 0.0) + self.dit_s + self.decode_s + self.canvas_s


def time_features(spec: EngineSpec, chunks: int, seed: int = 0) -> float | None:
    """Speech features per chunk: 24 kHz audio pushed a chunk's duration at a time."""
    preset = spec.preset
    if preset.audio.encoder != "mel":
        return None
    geometry = FrameGeometry.of_preset(preset)
    speech = SpeechFeatureStream(build_encoder(preset.audio, geometry), geometry)
    gen = torch.Generator().manual_seed(seed)
    piece = int(preset.stream.chunk_duration_s * SPEECH_RATE)
    audio = torch.randn(chunks, piece, generator=gen) * 0.1
    emitted, start = 0, time.perf_counter()
    for samples in audio:
        emitted += len(speech.push(samples.numpy(), SPEECH_RATE))
    return (time.perf_counter() - start) / max(emitted, 1)


def first_speaks(characters: int) -> torch.Tensor:
    """[1, K] speaking flags: the first character speaks."""
    speaking = torch.zeros(1, characters, dtype=torch.bool)
    speaking[0, 0] = True
    return speaking


def time_stages(
    spec: EngineSpec, chunks: int, *, device: str = "cpu", seed: int = 0, characters: int = 1
) -> StageTimes:
    """Speech features, DiT, decoder and canvas separately, one after the other in this
    process."""
    stream, dev = spec.preset.stream, torch.device(device)
    scene, features = bench_inputs(spec.preset, seed, characters=characters)
    session = StreamSession(
        spec.build_dit(dev),
        stream,
        scene,
        seed=seed,
        vae=spec.build_vae(dev),
        reference_decoder=spec.build_reference_decoder(dev),
    )
    dit, decode, canvas = [], [], []
    for _ in range(chunks):
        start = time.perf_counter()
        chunk = session.next_chunk(features, first_speaks(characters))
        sync(dev)
        decoding = time.perf_counter()
        presenter = session.presenter
        video = presenter.decoder.decode(chunk)  # ends with the frames on the CPU: synchronised
        presenting = time.perf_counter()
        if presenter.canvas is not None:
            presenter.canvas.present(video)
        dit.append(decoding - start)
        decode.append(presenting - decoding)
        canvas.append(time.perf_counter() - presenting)
    return StageTimes(
        features_s=time_features(spec, chunks, seed),
        dit_s=statistics.median(dit[WARMUP:]),
        decode_s=statistics.median(decode[WARMUP:]),
        canvas_s=statistics.median(canvas[WARMUP:]),
    )


def time_runtime(
    runtime: Runtime,
    spec: EngineSpec,
    chunks: int,
    seed: int = 0,
    on_chunk: Callable[[], None] | None = None,
    characters: int = 1,
) -> RuntimeTimes:
    """One session of `chunks` chunks: the first alone (time to first chunk), then IN_FLIGHT
    submitted ahead; arrival times recorded."""
    scene, features = bench_inputs(spec.preset, seed, characters=characters)
    speaking = first_speaks(characters)
    start = time.perf_counter()
    runtime.start_session(scene, seed=seed)
    runtime.submit(features, speaking)
    runtime.receive()
    arrivals = [time.perf_counter()]
    submitted = 1
    while len(arrivals) < chunks:
        while submitted < min(len(arrivals) + IN_FLIGHT, chunks):
            runtime.submit(features, speaking)
            submitted += 1
        runtime.receive()
        arrivals.append(time.perf_counter())
        if on_chunk is not None:
            on_chunk()
    runtime.end_session()
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    return RuntimeTimes(statistics.median(gaps[WARMUP:]), arrivals[0] - start)


def alternate(
    runtimes: dict[str, Runtime],
    spec: EngineSpec,
    *,
    chunks: int,
    rounds: int,
    on_chunk: Callable[[], None] | None = None,
    characters: int = 1,
) -> dict[str, RuntimeTimes]:
    """Each runtime streams `rounds` sessions, in turn; medians over the rounds."""
    results: dict[str, list[RuntimeTimes]] = {name: [] for name in runtimes}
    for _ in range(rounds):
        for name, runtime in runtimes.items():
            results[name].append(
                time_runtime(runtime, spec, chunks, on_chunk=on_chunk, characters=characters)
            )
    return {
        name: RuntimeTimes(
            statistics.median(r.ttbc_s for r in runs),
            statistics.median(r.first_chunk_s for r in runs),
        )
        for name, runs in results.items()
    }
