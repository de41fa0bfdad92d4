"""What each rank of a DisaggregatedRuntime does: DiT ranks stream latent chunks, the decoder
rank turns them into frames.

DiT rank 0 takes commands from the caller and shares them with the other DiT ranks (a scene
once per session, features once per chunk); it hands each chunk's latents to the decoder rank
point to point with isend, and goes straight on to the next chunk. The decoder posts the
receive of chunk t+1 before it decodes chunk t, so the hand-off overlaps decoding.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from multiprocessing.connection import Connection

import torch
import torch.distributed as dist

from avatar_engine.chunks import LatentChunk, chunk_latent_shape
from avatar_engine.runtime.protocol import receive, send
from avatar_engine.runtime.sequence_parallel import SequenceParallelSession
from avatar_engine.runtime.spec import EngineSpec
from avatar_engine.scene import SceneConditioning
from avatar_engine.session import StreamSession
from avatar_engine.vae.chunk_decoder import ChunkDecoder

# Header of every message from DiT rank 0 to the decoder: [kind, a, b, c].
START, CHUNK, END, STOP = range(4)  # START: a = batch; CHUNK: a, b, c = index, first, frames
HEADER = 4
WARMUP_CHUNKS = 3  # the sink, first and steady chunk roles


@dataclass(frozen=True)
class Settings:
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


def role(rank: int, settings: Settings) -> str:
    return "decoder" if rank == settings.decoder_rank else f"DiT rank {rank}"


def latent_shape(spec: EngineSpec, batch: int) -> tuple[int, ...]:
    return chunk_latent_shape(spec.preset.dit, spec.preset.stream, batch)


class DecoderLink:
    """DiT rank 0's side of the hand-off: non-blocking sends, one message in flight."""

    def __init__(self, spec: EngineSpec, settings: Settings, device: torch.device):
        self.spec, self.peer, self.device = spec, settings.decoder_rank, device
        self.in_flight: list[dist.Work] = []
        self.buffers: tuple[torch.Tensor, ...] = ()  # kept alive until their sends complete
        self.batch = 0

    def _post(self, header: list[int], latents: torch.Tensor | None = None) -> None:
        for work in self.in_flight:
            work.wait()
        tensors = (torch.tensor(header, dtype=torch.int64, device=self.device),)
        if latents is not None:
            tensors += (latents.contiguous(),)
        self.buffers = tensors
        self.in_flight = [dist.isend(t, self.peer) for t in tensors]

    def start(self, batch: int) -> None:
        self.batch = batch
        self._post([START, batch, 0, 0])

    def send(self, chunk: LatentChunk) -> None:
        header = [CHUNK, chunk.index, chunk.first_frame, chunk.num_frames]
        self._post(header, chunk.latents.float())

    def end(self) -> None:
        shape = latent_shape(self.spec, self.batch)
        self._post([END, 0, 0, 0], torch.zeros(shape, device=self.device))

    def stop(self) -> None:
        self._post([STOP, 0, 0, 0])
        for work in self.in_flight:
            work.wait()


class DitRank:
    def __init__(
        self,
        conn: Connection,
        spec: EngineSpec,
        settings: Settings,
        rank: int,
        group: dist.ProcessGroup,  # the DiT ranks
    ):
        self.conn, self.spec, self.settings = conn, spec, settings
        self.rank, self.group = rank, group
        self.device = torch.device(settings.devices[rank])
        self.model = spec.build_dit(self.device)
        self.link = DecoderLink(spec, settings, self.device) if rank == 0 else None

    def session(self, scene: SceneConditioning, seed: int) -> StreamSession:
        stream = self.spec.preset.stream
        if self.settings.dit_ranks == 1:
            return StreamSession(self.model, stream, scene, seed=seed)
        return SequenceParallelSession(self.model, stream, scene, group=self.group, seed=seed)

    def warm_up(self) -> None:
        cfg, stream = self.spec.preset.dit, self.spec.preset.stream
        scene = SceneConditioning(
            reference_latent=torch.zeros(1, cfg.out_dim, stream.latent_h, stream.latent_w),
            face_masks=torch.ones(1, 1, stream.grid_h, stream.grid_w),
            context=torch.zeros(1, cfg.text_len, cfg.text_dim),
            image_tokens=None if cfg.image_dim is None else torch.zeros(1, 1, cfg.image_dim),
        )
        session = self.session(scene, seed=0)
        features = torch.zeros(
            1, 1, stream.chunk_latent_frames, cfg.audio_window_frames, cfg.audio_feature_dim
        )
        for _ in range(WARMUP_CHUNKS):
            session.next_chunk(features, torch.ones(1, 1, dtype=torch.bool))

    def next_command(self) -> tuple:
        command = receive(self.conn) if self.rank == 0 else None
        if self.settings.dit_ranks > 1:
            shared = [command]
            dist.broadcast_object_list(shared, src=0, group=self.group)
            command = shared[0]
        return command

    def run(self) -> None:
        if self.settings.warmup:
            self.warm_up()
        send(self.conn, ("ready", self.rank))
        session = None
        while True:
            kind, *args = self.next_command()
            if kind == "start":
                scene, seed = args
                session = self.session(scene, seed)
                if self.link:
                    self.link.start(scene.batch)
            elif kind == "chunk":
                chunk = session.next_chunk(*args)
                if self.link:
                    self.link.send(chunk)
            elif kind == "end":
                session = None
                if self.link:
                    self.link.end()
            elif kind == "stop":
                if self.link:
                    if session is not None:
                        self.link.end()  # the decoder is mid-stream: let it finish first
                    self.link.stop()
                return


class DecoderRank:
    def __init__(self, conn: Connection, spec: EngineSpec, settings: Settings, rank: int):
        self.conn, self.spec, self.settings, self.rank = conn, spec, settings, rank
        self.device = torch.device(settings.devices[rank])
        self.vae = spec.build_vae(self.device)
        self.source = 0  # DiT rank 0

    def _receive(self, header: torch.Tensor, latents: torch.Tensor) -> list[dist.Work]:
        return [dist.irecv(header, self.source), dist.irecv(latents, self.source)]

    def warm_up(self) -> None:
        decoder = ChunkDecoder(self.vae, self.spec.preset.stream.fps)
        latents = torch.zeros(latent_shape(self.spec, 1), device=self.device)
        stream = self.spec.preset.stream
        for index in range(2):
            frames = (
                stream.first_chunk_video_frames if index == 0 else stream.video_frames_per_chunk
            )
            decoder.decode(
                LatentChunk(index, latents, 0, frames, torch.zeros(1, 0, dtype=torch.bool))
            )

    def run(self) -> None:
        if self.settings.warmup:
            self.warm_up()
        send(self.conn, ("ready", self.rank))
        header = torch.zeros(HEADER, dtype=torch.int64, device=self.device)
        while True:
            dist.recv(header, self.source)
            kind = int(header[0])
            if kind == STOP:
                return
            if kind != START:
                raise RuntimeError(f"message kind {kind} from DiT rank 0 outside a session")
            self.stream(batch=int(header[1]))

    def stream(self, batch: int) -> None:
        """Decode one session's chunks until its END message."""
        decoder = ChunkDecoder(self.vae, self.spec.preset.stream.fps)
        shape = latent_shape(self.spec, batch)
        buffers = [
            (
                torch.zeros(HEADER, dtype=torch.int64, device=self.device),
                torch.zeros(shape, device=self.device),
            )
            for _ in range(2)
        ]
        pending = self._receive(*buffers[0])
        for turn in itertools.count():
            for work in pending:
                work.wait()
            header, latents = buffers[turn % 2]
            if header[0] == END:
                return
            pending = self._receive(*buffers[(turn + 1) % 2])  # arrives while this one decodes
            index, first, frames = (int(v) for v in header[1:])
            no_speakers = torch.zeros(batch, 0, dtype=torch.bool)  # the caller knows who spoke
            video = decoder.decode(LatentChunk(index, latents, first, frames, no_speakers))
            send(self.conn, ("frames", video))
