"""The DiT on one device (or several, sequence-parallel), the decoder on another: the paper's
Score–VAE disaggregation.

Each rank is its own process (`runtime/rank_main.py`), joined by torch.distributed (NCCL on GPUs,
gloo on CPU). The caller's process is not a rank: it sends commands to DiT rank 0 and receives
frames from the decoder over local sockets, and it watches every rank. A rank that fails ends
the runtime with that rank's traceback; a rank that dies is noticed within POLL_S; close()
stops the ranks and kills any that do not exit, so nothing hangs and nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import replace
from multiprocessing.connection import Connection, Listener, wait
from typing import NoReturn

import torch

from avatar_engine.chunks import VideoChunk
from avatar_engine.runtime.base import Runtime
from avatar_engine.runtime.protocol import (
    AUTHKEY_ENV,
    Command,
    DecoderScene,
    EndStream,
    Frames,
    Init,
    Message,
    NextChunk,
    RankFailed,
    RankLayout,
    Ready,
    StartStream,
    Stop,
    receive,
    send,
)
from avatar_engine.runtime.ranks import role
from avatar_engine.runtime.sequence_parallel import check_sequence_parallel
from avatar_engine.runtime.spec import EngineSpec
from avatar_engine.scene import SceneConditioning

POLL_S = 0.05
PEER_REPORT_S = 1.0  # after a failure, how long the other ranks' reports are awaited
PEER_LOST = ("by peer", "remote worker")  # how gloo/NCCL say a peer went away
STOP_GRACE_S = 5.0  # a stopped rank that has not exited by then is killed
RANK_MODULE = "avatar_engine.runtime.rank_main"  # what each rank's process runs


def default_devices(dit_ranks: int) -> tuple[str, ...]:
    """One GPU per rank when there are enough, else everything on the CPU."""
    if torch.cuda.is_available() and torch.cuda.device_count() > dit_ranks:
        return tuple(f"cuda:{i}" for i in range(dit_ranks + 1))
    return ("cpu",) * (dit_ranks + 1)


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _lost_a_peer(report: str) -> bool:
    return any(sign in report for sign in PEER_LOST)


def _shutdown(procs: list[subprocess.Popen], listener: Listener, workdir: str) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait()
    listener.close()
    shutil.rmtree(workdir, ignore_errors=True)


class DisaggregatedRuntime(Runtime):
    def __init__(
        self,
        spec: EngineSpec,
        *,
        dit_ranks: int = 1,
        devices: tuple[str, ...] | None = None,
        dit_threads: int | None = None,
        decoder_threads: int = 1,
        warmup: bool = True,
        start_timeout_s: float = 600.0,
    ):
        self.spec, self.stream = spec, spec.preset.stream
        check_sequence_parallel(spec.preset.dit, self.stream, dit_ranks)
        devices = devices or default_devices(dit_ranks)
        if len(devices) != dit_ranks + 1:
            raise ValueError(f"{dit_ranks} DiT ranks and a decoder need {dit_ranks + 1} devices")
        on_gpu = [d.startswith("cuda") for d in devices]
        if any(on_gpu) and (not all(on_gpu) or len(set(devices)) < len(devices)):
            raise ValueError(
                f"devices {devices}: on GPUs every rank needs its own GPU (NCCL); with one GPU "
                "use LocalRuntime"
            )
        cores = os.cpu_count() or 1
        workdir = tempfile.mkdtemp(prefix="avatar-runtime-")
        self.settings = RankLayout(
            dit_ranks=dit_ranks,
            devices=tuple(devices),
            dit_threads=dit_threads or max(1, (cores - decoder_threads) // dit_ranks),
            decoder_threads=decoder_threads,
            backend="nccl" if all(on_gpu) else "gloo",
            store=os.path.join(workdir, "store"),
            warmup=warmup,
        )
        authkey = os.urandom(16)
        address = os.path.join(workdir, "runtime.sock")
        listener = Listener(address, family="AF_UNIX", authkey=authkey)
        env = {**os.environ, AUTHKEY_ENV: authkey.hex()}
        command = [sys.executable, "-m", RANK_MODULE, address]
        self.procs = [
            subprocess.Popen([*command, str(rank)], env=env)
            for rank in range(self.settings.world_size)
        ]
        self._finalizer = weakref.finalize(self, _shutdown, self.procs, listener, workdir)
        self._listener = listener
        self._speaking: deque[torch.Tensor] = deque()  # of chunks submitted, not yet received
        self._in_session = False
        self.conns: list[Connection] = []
        try:
            deadline = time.monotonic() + start_timeout_s
            self.conns = self._accept(deadline)
            for conn in self.conns:
                send(conn, Init(spec, self.settings))
            self._await_ready(deadline)
        except BaseException:
            self.close()
            raise

    # ---- the Runtime interface -----------------------------------------------------------

    def start_session(self, scene: SceneConditioning, *, seed: int = 0) -> None:
        scene.validate(self.spec.preset.dit, self.stream)
        self.end_session()
        picture = None
        if self.spec.reference_decoder_weights:
            if scene.picture is None:
                raise ValueError("this engine's reference decoder needs the scene's picture")
            picture = scene.picture.to("cpu")
        # StartStream first: the decoder reads its scene once DiT rank 0 has started it, and a
        # scene larger than the socket's buffer blocks its sender until then
        self._send(0, StartStream(scene, seed))
        self._send(self.settings.decoder_rank, DecoderScene(picture, scene.canvas))
        self._in_session = True

    def submit(self, features: torch.Tensor, speaking: torch.Tensor) -> None:
        if not self._in_session:
            raise RuntimeError("start_session() first")
        self._send(0, NextChunk(features.cpu(), speaking.cpu()))
        self._speaking.append(speaking.cpu().bool())

    def receive(self, timeout: float | None = None) -> VideoChunk:
        self._ensure_open()
        if not self._speaking:
            raise RuntimeError("no chunk is pending: submit() one first")
        deadline = None if timeout is None else time.monotonic() + timeout
        decoder = self.conns[self.settings.decoder_rank]
        while True:
            self._check()
            if decoder.poll(POLL_S):
                message = self._recv(self.settings.decoder_rank)
                if not isinstance(message, Frames):
                    self._fail(self.settings.decoder_rank, f"sent {message.kind!r}, not frames")
                return replace(message.video, speaking=self._speaking.popleft())
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no frames within {timeout} s")

    def end_session(self) -> None:
        if not self._in_session:
            return
        while self._speaking:  # frames already on their way are received and dropped
            self.receive()
        self._send(0, EndStream())
        self._in_session = False

    def close(self) -> None:
        if not self._finalizer.alive:
            return
        try:
            if self.conns and self.procs[0].poll() is None:
                send(self.conns[0], Stop())
                deadline = time.monotonic() + STOP_GRACE_S
                for proc in self.procs:
                    proc.wait(max(0.0, deadline - time.monotonic()))
        except (OSError, subprocess.TimeoutExpired):
            pass  # the finalizer kills whatever did not stop
        finally:
            for conn in self.conns:
                conn.close()
            self._finalizer()

    # ---- watching the ranks --------------------------------------------------------------

    def _accept(self, deadline: float) -> list[Connection]:
        """Every rank's connection, indexed by rank; fails early if a rank dies first."""
        accepted: dict[int, Connection] = {}

        def accept_all() -> None:
            try:
                for _ in range(self.settings.world_size):
                    conn = self._listener.accept()
                    hello = receive(conn)
                    accepted[hello.rank] = conn
            except OSError:
                pass  # the listener was closed: the runtime failed while starting

        thread = threading.Thread(target=accept_all, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(POLL_S)
            self._check_exits()
            if time.monotonic() > deadline:
                raise TimeoutError("the runtime's ranks did not connect in time")
        return [accepted[rank] for rank in range(self.settings.world_size)]

    def _await_ready(self, deadline: float) -> None:
        """Every rank's "ready", in whatever order the ranks send it."""
        waiting = {conn: rank for rank, conn in enumerate(self.conns)}
        while waiting:
            self._check_exits()
            for conn in wait(list(waiting), POLL_S):
                rank = waiting.pop(conn)
                message = self._recv(rank)
                if not isinstance(message, Ready):
                    self._fail(rank, f"sent {message.kind!r} where 'ready' was expected")
            if waiting and time.monotonic() > deadline:
                silent = ", ".join(role(rank, self.settings) for rank in waiting.values())
                raise TimeoutError(f"not ready in time: {silent}")

    def _recv(self, rank: int) -> Message:
        """The rank's next message; fails the runtime on an error report or a lost rank."""
        try:
            message = receive(self.conns[rank])
        except (EOFError, OSError):
            self._fail(rank, self._exit_report(rank))
        if isinstance(message, RankFailed):
            self._fail(rank, f"failed:\n{message.traceback}")
        return message

    def _check(self) -> None:
        """Raise if any rank reported an error or exited."""
        for rank, conn in enumerate(self.conns):
            if rank != self.settings.decoder_rank and conn.poll(0):
                message = self._recv(rank)  # after Ready, a DiT rank only reports errors
                self._fail(rank, f"sent {message.kind!r} unasked")
        self._check_exits()

    def _check_exits(self) -> None:
        for rank, proc in enumerate(self.procs):
            if proc.poll() is None:
                continue
            if rank < len(self.conns) and self.conns[rank].poll(0):
                self._recv(rank)  # its traceback, if it sent one before exiting
            self._fail(rank, self._exit_report(rank))

    def _exit_report(self, rank: int) -> str:
        try:
            return _describe_exit(self.procs[rank].wait(STOP_GRACE_S))
        except subprocess.TimeoutExpired:
            return "closed its connection"

    def _late_report(self, rank: int, deadline: float) -> str | None:
        """What a rank says in the moments after another failed: its error, how it exited, or
        None while it still runs."""
        if rank >= len(self.conns):
            return None if self.procs[rank].poll() is None else self._exit_report(rank)
        while (remaining := deadline - time.monotonic()) > 0:
            if not self.conns[rank].poll(min(remaining, POLL_S)):
                if self.procs[rank].poll() is not None:
                    return self._exit_report(rank)
                continue
            try:
                message = receive(self.conns[rank])
            except (EOFError, OSError):
                return self._exit_report(rank)
            if isinstance(message, RankFailed):
                return f"failed:\n{message.traceback}"
        return None

    def _fail(self, rank: int, report: str) -> NoReturn:
        """Stop everything and raise, naming the rank that failed first: the ranks that lost a
        peer report too, so all reports are gathered briefly and the consequences go last."""
        reports = {rank: report}
        deadline = time.monotonic() + PEER_REPORT_S
        for other in range(self.settings.world_size):
            if other != rank and (late := self._late_report(other, deadline)) is not None:
                reports[other] = late
        ordered = sorted(reports, key=lambda r: (_lost_a_peer(reports[r]), r != rank))
        for conn in self.conns:
            conn.close()
        self._finalizer()
        text = "\n".join(f"{role(r, self.settings)} {reports[r]}" for r in ordered)
        raise RuntimeError(f"the runtime stopped: {text}")

    def _ensure_open(self) -> None:
        if not self._finalizer.alive:
            raise RuntimeError("the runtime is closed")

    def _send(self, rank: int, message: Command | DecoderScene) -> None:
        self._ensure_open()
        self._check()
        try:
            send(self.conns[rank], message)
        except OSError:
            self._fail(rank, self._exit_report(rank))
