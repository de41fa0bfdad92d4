"""Messages between the runtime and its ranks, over local sockets: one dataclass per kind.

The runtime says Init to every rank, then StartStream, NextChunk, EndStream and Stop to DiT
rank 0, and the stream's DecoderScene to the decoder after each StartStream (the decoder
reads it once rank 0 has started the stream); each rank says Hello on connecting and Ready once
built; the decoder sends Frames; any rank may send RankFailed. Each message's
`kind` names it in the runtime's reports.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import ClassVar

import torch

from avatar_engine.canvas import Canvas
from avatar_engine.chunks import VideoChunk
from avatar_engine.runtime.spec import EngineSpec
from avatar_engine.scene import SceneConditioning
from avatar_engine.vae.reference_decoder import StillPicture

AUTHKEY_ENV = "AVATAR_RUNTIME_AUTHKEY"  # the key a rank connects back with, hex


@dataclass(frozen=True)
class RankLayout:
    """How the ranks are laid out; the same for every rank."""

    dit_ranks: int
    devices: tuple[str, ...]  # one per rank, the decoder's last
    dit_threads: int
    decoder_threads: int
    backend: str  # gloo or nccl
    store: str  # FileStore path the ranks meet at
    warmup: bool

    @property
    def world_size(self) -> int:
        return self.dit_ranks + 1

    @property
    def decoder_rank(self) -> int:
        return self.dit_ranks


@dataclass(frozen=True)
class Hello:
    kind: ClassVar[str] = "hello"
    rank: int  # who connected


@dataclass(frozen=True)
class Init:
    kind: ClassVar[str] = "init"
    spec: EngineSpec  # what to build
    settings: RankLayout  # the layout every rank shares


@dataclass(frozen=True)
class Ready:
    kind: ClassVar[str] = "ready"
    rank: int  # built (and warmed up, when asked): it takes commands now


@dataclass(frozen=True)
class StartStream:
    kind: ClassVar[str] = "start"
    scene: SceneConditioning
    seed: int  # of the stream's noise


@dataclass(frozen=True)
class DecoderScene:
    kind: ClassVar[str] = "decoder scene"
    picture: StillPicture | None  # on the CPU: what a reference decoder draws against
    canvas: Canvas | None  # the frames people see, which the decoded frames are pasted into


@dataclass(frozen=True)
class NextChunk:
    kind: ClassVar[str] = "chunk"
    features: torch.Tensor  # [B, K, Fc, W, Da] on the CPU
    speaking: torch.Tensor  # [B, K] bool on the CPU


@dataclass(frozen=True)
class EndStream:
    kind: ClassVar[str] = "end"


@dataclass(frozen=True)
class Stop:
    kind: ClassVar[str] = "stop"


@dataclass(frozen=True)
class Frames:
    kind: ClassVar[str] = "frames"
    video: VideoChunk  # finished frames; who spoke is the runtime's to fill in


@dataclass(frozen=True)
class RankFailed:
    kind: ClassVar[str] = "error"
    rank: int
    traceback: str


Message = (
    Hello
    | Init
    | Ready
    | StartStream
    | DecoderScene
    | NextChunk
    | EndStream
    | Stop
    | Frames
    | RankFailed
)
Command = StartStream | NextChunk | EndStream | Stop  # what DiT rank 0 takes from the runtime


def send(conn: Connection, message: Message) -> None:
    """Plain pickle: tensors travel as bytes. (Connection.send would share them through
    multiprocessing's resource sharer, which only works between processes it spawned.)"""
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def receive(conn: Connection) -> Message:
    return pickle.loads(conn.recv_bytes())
