"""What each rank of a DisaggregatedRuntime does: DiT ranks stream latent chunks, the decoder
rank turns them into frames.

DiT rank 0 takes commands from the caller and shares them with the other DiT ranks (a scene
once per session, features once per chunk); it hands each chunk's latents to the decoder rank
point to point with isend, and goes straight on to the next chunk. The decoder posts the
receive of chunk t+1 before it decodes chunk t, so the hand-off overlaps decoding.
"""

from __future__ import annotations

import itertools
from multiprocessing.connection import Connection

import torch
import torch.distributed as dist

from avatar_engine.canvas import Presenter
from avatar_engine.chunks import LatentChunk, chunk_latent_shape
from avatar_engine.runtime.protocol import (
    Command,
    DecoderScene,
    EndStream,
    Frames,
    NextChunk,
    RankLayout,
    Ready,
    StartStream,
    Stop,
    receive,
    send,
)
from avatar_engine.runtime.sequence_parallel import SequenceParallelSession
from avatar_engine.runtime.spec import EngineSpec
from avatar_engine.runtime.warmup import blank_scene, warm_up_decoder, warm_up_dit
from avatar_engine.scene import SceneConditioning
from avatar_engine.session import StreamSession
from avatar_engine.vae.chunk_decoder import ChunkDecoder

# Header of every message from DiT rank 0 to the decoder: [kind, a, b, c].
START, CHUNK, END, STOP = range(4)  # START: a = batch; CHUNK: a, b, c = index, first, frames
HEADER = 4


def role(rank: int, settings: RankLayout) -> str:
    return "decoder" if rank == settings.decoder_rank else f"DiT rank {rank}"


def latent_shape(spec: EngineSpec, batch: int) -> tuple[int, ...]:
    return chunk_latent_shape(spec.preset.dit, spec.preset.stream, batch)


class DecoderLink:
    """DiT rank 0's side of the hand-off: non-blocking sends, one message in flight."""

    def __init__(self, spec: EngineSpec, settings: RankLayout, device: torch.device):
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
        settings: RankLayout,
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
        warm_up_dit(self.session(blank_scene(self.spec), seed=0), self.spec)

    def next_command(self) -> Command:
        command = receive(self.conn) if self.rank == 0 else None
        if self.settings.dit_ranks > 1:
            shared = [command]
            dist.broadcast_object_list(shared, src=0, group=self.group)
            command = shared[0]
        return command

    def run(self) -> None:
        if self.settings.warmup:
            self.warm_up()
        send(self.conn, Ready(self.rank))
        session = None
        while True:
            match self.next_command():
                case StartStream(scene=scene, seed=seed):
                    session = self.session(scene, seed)
                    if self.link:
                        self.link.start(scene.batch)
                case NextChunk(features=features, speaking=speaking):
                    chunk = session.next_chunk(features, speaking)
                    if self.link:
                        self.link.send(chunk)
                case EndStream():
                    session = None
                    if self.link:
                        self.link.end()
                case Stop():
                    if self.link:
                        if session is not None:
                            self.link.end()  # the decoder is mid-stream: let it finish first
                        self.link.stop()
                    return


class DecoderRank:
    def __init__(self, conn: Connection, spec: EngineSpec, settings: RankLayout, rank: int):
        self.conn, self.spec, self.settings, self.rank = conn, spec, settings, rank
        self.device = torch.device(settings.devices[rank])
        self.vae = spec.build_vae(self.device)
        self.reference_decoder = spec.build_reference_decoder(self.device)
        self.source = 0  # DiT rank 0

    def _receive(self, header: torch.Tensor, latents: torch.Tensor) -> list[dist.Work]:
        return [dist.irecv(header, self.source), dist.irecv(latents, self.source)]

    def warm_up(self) -> None:
        warm_up_decoder(self.vae, self.spec, self.reference_decoder)

    def run(self) -> None:
        if self.settings.warmup:
            self.warm_up()
        send(self.conn, Ready(self.rank))
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
        message = receive(self.conn)  # the runtime sends it right after StartStream
        if not isinstance(message, DecoderScene):
            raise RuntimeError(f"the runtime sent {message.kind!r}, not the stream's scene")
        decoder = ChunkDecoder(
            self.vae,
            self.spec.preset.stream.fps,
            reference_decoder=self.reference_decoder,
            picture=message.picture,
        )
        presenter = Presenter(decoder, message.canvas)
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
            video = presenter.present(LatentChunk(index, latents, first, frames, no_speakers))
            send(self.conn, Frames(video))
