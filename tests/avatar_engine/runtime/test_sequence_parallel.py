"""Sequence parallelism: 2 gloo ranks on CPU stream the same chunks as one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from avatar_engine.cache import StreamCache, kv_cache_bytes
from avatar_engine.model.window import ChunkRole, StreamingWindow, slot_tables
from avatar_engine.runtime.sequence_parallel import (
    SequenceParallelSession,
    check_sequence_parallel,
    rank_major_tables,
)
from avatar_engine.scene import face_mask_from_box
from avatar_engine.session import StreamSession
from tests.conftest import (
    MICRO_STREAM,
    make_scene,
    micro_dit,
    random_features,
    random_model,
    relative_error,
)

WORLD = 2
CHUNKS = 5  # SINK, FIRST, then STEADY three times (the caches roll over)
FC = MICRO_STREAM.chunk_latent_frames
SEED = 3
COLLECTIVE_TIMEOUT_S = 20  # a rank whose peer died stops waiting after this
RUN_TIMEOUT_S = 60  # the test kills both ranks and fails after this (a run takes a few seconds)
ROOT = Path(__file__).resolve().parents[3]
MODULE = ".".join(Path(__file__).resolve().relative_to(ROOT).with_suffix("").parts)


def _scene(cfg):
    """Two characters whose faces cover different rows, so each rank sees other faces."""
    boxes = [(0.0, 0.0, 0.5, 0.5), (0.25, 0.5, 1.0, 1.0)]  # top left; bottom right
    masks = torch.stack([face_mask_from_box(MICRO_STREAM, box) for box in boxes])
    return replace(make_scene(cfg, MICRO_STREAM), face_masks=masks[None])


def _stream(session: StreamSession) -> torch.Tensor:
    """[CHUNKS, B, z, Fc, h, w] latents; one of the two characters speaks in each chunk."""
    cfg = session.model.cfg
    features = random_features(cfg, CHUNKS * FC, seed=SEED)
    chunks = []
    for c in range(CHUNKS):
        speaking = torch.tensor([[c % 3 != 2, c % 3 == 2]])  # character 1 speaks in chunk 2
        chunk = session.next_chunk(features[:, :, c * FC : (c + 1) * FC], speaking)
        chunks.append(chunk.latents)
    return torch.stack(chunks)


def _rank_main(rank: int, workdir: str) -> None:
    """One rank: join the group through a file store, stream, save the latents."""
    torch.set_num_threads(1)
    store = dist.FileStore(os.path.join(workdir, "store"), WORLD)
    dist.init_process_group(
        "gloo",
        store=store,
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
    )
    cfg = micro_dit()
    session = SequenceParallelSession(random_model(cfg), MICRO_STREAM, _scene(cfg), seed=SEED)
    latents = _stream(session)
    torch.save(
        {"latents": latents, "cache_shape": tuple(session.cache.storage.shape)},
        os.path.join(workdir, f"rank{rank}.pt"),
    )
    # Gloo's teardown on CPU aborts now and then (about 1 run in 30 on 2 cores: "terminate
    # called without an active exception") once a peer has closed its sockets, whether or not
    # the group is destroyed first. Meet the peer, then leave without tearing anything down.
    dist.barrier()
    os._exit(0)


def _run_ranks(workdir: Path) -> None:
    """Run WORLD rank processes; fail with their stderr if one fails or they overrun."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if "lo" in {name for _, name in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # keep the ranks' traffic on loopback
    logs = [workdir / f"rank{r}.log" for r in range(WORLD)]
    procs = []
    try:
        for rank, log in enumerate(logs):
            with open(log, "w") as err:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", MODULE, str(rank), str(workdir)],
                        cwd=ROOT,
                        env=env,
                        stdout=err,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while any(p.poll() is None for p in procs):
            failed = any(p.returncode not in (None, 0) for p in procs)
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    codes = [p.returncode for p in procs]
    if codes != [0] * WORLD:
        tails = "\n".join(
            f"--- rank {r} ---\n{log.read_text()[-3000:]}" for r, log in enumerate(logs)
        )
        pytest.fail(
            f"ranks exited with {codes} (negative: killed after a peer failed or after "
            f"{RUN_TIMEOUT_S}s)\n{tails}"
        )


def test_two_ranks_stream_the_single_process_chunks(tmp_path):
    cfg = micro_dit()
    assert cfg.num_heads % WORLD == 0 and MICRO_STREAM.grid_h % WORLD == 0
    single = _stream(StreamSession(random_model(cfg), MICRO_STREAM, _scene(cfg), seed=SEED))
    _run_ranks(tmp_path)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    # Every rank holds the whole prediction, so the sampler runs identically everywhere.
    assert all(torch.equal(r["latents"], results[0]["latents"]) for r in results)
    for rank, result in enumerate(results):
        assert result["cache_shape"][-2] == cfg.num_heads // WORLD  # each rank caches H/P heads
        for c in range(CHUNKS):
            error = relative_error(result["latents"][c], single[c])
            assert error <= 1e-5, f"rank {rank} chunk {c} ({ChunkRole.of(c).name}): {error:.2e}"


def test_rank_major_tables_match_the_gathered_token_order():
    """A window over tokens in rank-major order with permuted tables gives the same outputs
    (permuted alike) as the frame-major window, across the SINK, FIRST and STEADY roles."""
    cfg = micro_dit()
    s = MICRO_STREAM
    natural = slot_tables(cfg, FC, s.grid_h, s.grid_w, torch.device("cpu"))
    permuted = rank_major_tables(natural, WORLD, s.tokens_per_latent_frame)
    order = torch.arange(s.tokens_per_chunk).view(FC, WORLD, -1).transpose(0, 1).flatten()
    caches = [StreamCache(cfg, s, batch=1, device="cpu", dtype=torch.float32) for _ in range(2)]
    gen = torch.Generator().manual_seed(0)
    for c in range(4):
        q, k, v = torch.randn(3, 1, s.tokens_per_chunk, cfg.num_heads, cfg.head_dim, generator=gen)
        role = ChunkRole.of(c)
        want = StreamingWindow(role, natural, caches[0].steps[0])(0, q, k, v)
        got = StreamingWindow(role, permuted, caches[1].steps[0])(
            0, q[:, order], k[:, order], v[:, order]
        )
        assert relative_error(got, want[:, order]) <= 1e-6, role.name


def test_splits_that_do_not_divide_are_refused():
    cfg = micro_dit()  # 2 heads, 4 grid rows
    check_sequence_parallel(cfg, MICRO_STREAM, 2)
    with pytest.raises(ValueError, match="4 rows, which do not split over 3 ranks"):
        check_sequence_parallel(cfg, MICRO_STREAM, 3)
    with pytest.raises(ValueError, match="2 attention heads do not split over 4 ranks"):
        check_sequence_parallel(cfg, MICRO_STREAM, 4)


def test_caches_for_a_head_subset():
    cfg = micro_dit()
    half = StreamCache(cfg, MICRO_STREAM, batch=1, device="cpu", dtype=torch.float32, heads=1)
    assert half.steps[0][0].k.shape[-2:] == (1, cfg.head_dim)
    assert half.nbytes == kv_cache_bytes(cfg, MICRO_STREAM, itemsize=4, heads=1)
    assert 2 * half.nbytes == kv_cache_bytes(cfg, MICRO_STREAM, itemsize=4)
    with pytest.raises(ValueError, match="a cache holds 1 to 2 heads, not 3"):
        StreamCache(cfg, MICRO_STREAM, batch=1, device="cpu", dtype=torch.float32, heads=3)


if __name__ == "__main__":
    _rank_main(int(sys.argv[1]), sys.argv[2])
