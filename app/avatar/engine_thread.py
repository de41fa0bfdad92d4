"""The engine side of a generator: one thread owns the runtime session and the speech
features, and turns messages from the event loop into chunks of frames.

Everything it knows arrives in one FIFO inbox, so it needs no locks. Work is tagged with
the epoch of the last clear_buffer: frames of an older epoch are never delivered. It keeps
about one chunk of frames ahead of the consumer and no more, so the consumer's pace (its
sink's backpressure) is the stream's pace.
"""

from __future__ import annotations

import logging
import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.avatar.engine import AvatarEngine
from app.avatar.frames import AvatarFrame, VideoFormat, audio_frame, silence, video_frames
from app.avatar.messages import (
    Audio,
    Clear,
    Close,
    Message,
    NextSpeaker,
    PcmIn,
    SegmentEnd,
    SetSpeaker,
    Taken,
)
from app.avatar.segments import Segment
from avatar_engine import (
    SceneConditioning,
    SpeechFeatureStream,
    Timeline,
    VideoChunk,
    route_to_speaker,
)

logger = logging.getLogger(__name__)
PUSH_PIECE_S = 30  # replaying a segment's audio into the feature stream, in pieces this long


@dataclass(frozen=True)
class InFlight:
    """A chunk submitted to the runtime, not yet received."""

    epoch: int  # when it was submitted
    chunk: int
    frames: int


class EngineThread:
    def __init__(
        self,
        engine: AvatarEngine,
        scene: SceneConditioning,
        *,
        rate: int,
        seed: int,
        lead_frames: int,
        video_format: VideoFormat,
        deliver: Callable[[int, list[AvatarFrame]], None],
    ):
        self.engine, self.scene, self.seed, self.rate = engine, scene, seed, rate
        self.runtime, self.geometry = engine.runtime, engine.geometry
        self.lead_frames, self.video_format, self.deliver = lead_frames, video_format, deliver
        self.fps = engine.fps
        self.timeline = Timeline(rate, self.fps)
        self.stream = SpeechFeatureStream(engine.encoder, engine.geometry)
        dit = engine.preset.dit
        self.feature_shape = (
            engine.preset.stream.chunk_latent_frames,
            dit.audio_window_frames,
            dit.audio_feature_dim,
        )  # (Fc, W, Da)
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.epoch = 0
        self.speaker = 0
        self.next_speaker: int | None = None  # of the next segment to start (NextSpeaker)
        self.next_chunk = 0  # the next chunk to submit
        self.claimed_until = 0  # the first chunk no segment's audio reaches
        self.buffered = 0  # frames delivered in this epoch, not yet taken
        self.in_flight: deque[InFlight] = deque()
        self.segments: list[Segment] = []  # not yet fully delivered, in order
        self.stalled = False
        self.closed = False

    def run(self) -> None:
        self.runtime.start_session(self.scene, seed=self.seed)
        try:
            while True:
                self._drain()
                if self.closed:
                    return
                if not self._step():
                    self._handle(self.inbox.get())
        finally:
            self.runtime.end_session()

    # ---- messages ------------------------------------------------------------------------

    def _drain(self) -> None:
        while True:
            try:
                self._handle(self.inbox.get_nowait())
            except queue.Empty:
                return

    def _handle(self, msg: Message) -> None:
        match msg:
            case Audio(epoch=epoch, pcm=pcm) if epoch == self.epoch:
                self._on_audio(pcm)
            case SegmentEnd(epoch=epoch) if epoch == self.epoch:
                self._on_end()
            case Clear(epoch=epoch):
                self._on_clear(epoch)
            case Taken(epoch=epoch, frames=frames) if epoch == self.epoch:
                self.buffered -= frames
            case SetSpeaker(index=index):
                self.speaker = index
            case NextSpeaker(epoch=epoch, index=index) if epoch == self.epoch:
                self.next_speaker = index
            case Close():
                self.closed = True

    def _on_audio(self, pcm: PcmIn) -> None:
        seg = self.segments[-1] if self.segments and not self.segments[-1].ended else None
        if seg is None:  # a segment starts: at the first chunk nobody has taken yet
            seg = Segment(rate=self.rate, speaker=self.next_speaker)
            self.next_speaker = None
            self.segments.append(seg)
            self._anchor(seg, max(self.next_chunk, self.claimed_until))
        self._add_audio(seg, seg.convert(pcm))

    def _on_end(self) -> None:
        seg = self.segments[-1] if self.segments and not self.segments[-1].ended else None
        if seg is None:
            logger.debug("segment end without audio (after a clear): ignored")
            return
        self._add_audio(seg, seg.flush())
        if seg.samples == 0:  # still one frame, so that its end plays and is reported
            self._add_audio(seg, np.zeros(self.timeline.samples_in(seg.first_frame), np.int16))
        seg.features.extend(self.stream.end_of_turn())
        seg.end_frame = seg.first_frame + self.timeline.frames_for(seg.first_frame, seg.samples)
        last = max(
            seg.anchor + seg.submitted + len(seg.features) - 1,
            self.geometry.chunk_of_frame(seg.end_frame - 1),
        )
        self.claimed_until = max(self.claimed_until, last + 1)

    def _on_clear(self, epoch: int) -> None:
        dropped = sum(s.samples for s in self.segments) / self.rate
        self.epoch, self.buffered = epoch, 0
        self.segments.clear()
        self.next_speaker = None
        self.stream.reset(self.next_chunk)
        self.claimed_until = self.next_chunk + 1  # the next chunk is silent
        logger.debug("cleared", extra={"epoch": epoch, "dropped_audio_s": round(dropped, 3)})

    def _add_audio(self, seg: Segment, samples: np.ndarray) -> None:
        if len(samples):
            seg.audio += samples.tobytes()
            seg.features.extend(self.stream.push(samples, self.rate))

    def _anchor(self, seg: Segment, chunk: int) -> None:
        """Place the segment's first sample at the chunk's first frame and compute the
        features of the audio it has so far."""
        seg.anchor, seg.first_frame = chunk, self.geometry.chunk_start_frame(chunk)
        self.stream.reset(chunk)
        pcm, piece = seg.pcm(), PUSH_PIECE_S * self.rate
        seg.features = deque()
        for i in range(0, len(pcm), piece):
            seg.features.extend(self.stream.push(pcm[i : i + piece], self.rate))

    # ---- chunks --------------------------------------------------------------------------

    def _step(self) -> bool:
        """Submit or receive one chunk; False when there is nothing to do until a message."""
        lead = self.buffered + sum(f.frames for f in self.in_flight)
        if lead < self.lead_frames and self._submit_next():
            return True
        if self.in_flight:
            self._receive()
            return True
        return False

    def _submit_next(self) -> bool:
        t = self.next_chunk
        seg = next((s for s in self.segments if s.submitting), None)
        features = None
        if seg is not None and seg.anchor <= t:
            if seg.features:
                chunk_features = seg.features.popleft()
                if chunk_features.index != t:
                    raise RuntimeError(f"features of chunk {chunk_features.index} at chunk {t}")
                features, seg.submitted = chunk_features.features, seg.submitted + 1
            elif seg.submitted == 0:  # its first chunk's audio is not all here: start later
                self._anchor(seg, t + 1)
            else:  # mid-segment, the audio comes slower than real time: wait for it
                if not self.stalled:
                    logger.warning("avatar audio late: video waits", extra={"chunk": t})
                self.stalled = True
                return False
        self.stalled = False
        speaker = self.speaker if seg is None or seg.speaker is None else seg.speaker
        routed, speaking = route_to_speaker(
            features,
            None if features is None else speaker,
            self.scene.num_characters,
            feature_shape=self.feature_shape,
        )  # [1, K, Fc, W, Da], [1, K]
        self.runtime.submit(routed, speaking)
        frames = self.geometry.chunk_start_frame(t + 1) - self.geometry.chunk_start_frame(t)
        self.in_flight.append(InFlight(epoch=self.epoch, chunk=t, frames=frames))
        self.next_chunk += 1
        return True

    def _receive(self) -> None:
        flight = self.in_flight.popleft()
        chunk = self.runtime.receive()
        if flight.epoch != self.epoch:
            return  # cleared while it was being made: never shown
        frames = self._frames(chunk)
        self.buffered += len(frames)
        end = frames[-1].index + 1
        self.segments = [
            s
            for s in self.segments
            if s.submitting or (s.end_frame is not None and s.end_frame > end)
        ]
        self.deliver(flight.epoch, frames)

    def _frames(self, chunk: VideoChunk) -> list[AvatarFrame]:
        speaking = chunk.speaking[0]  # [K]
        speaker = int(speaking.nonzero()[0, 0]) if speaking.any() else None
        videos = video_frames(chunk.frames[0], self.video_format)  # from [T, H, W, 3]
        out = []
        for i, video in enumerate(videos):
            v = chunk.first_frame + i
            seg = next((s for s in self.segments if s.covers(v)), None)
            audio = (
                silence(self.timeline.samples_in(v), self.rate)
                if seg is None
                else audio_frame(seg.audio_for(v, self.timeline), self.rate)
            )
            out.append(
                AvatarFrame(
                    index=v,
                    pts=v / self.fps,
                    video=video,
                    audio=audio,
                    speaker=speaker,
                    in_segment=seg is not None,
                    segment_end=seg is not None and seg.end_frame == v + 1,
                )
            )
        return out
