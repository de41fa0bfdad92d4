"""The engine behind livekit-agents' VideoGenerator contract.

Audio pushed in is placed on the video timeline at a chunk boundary; the engine
thread generates chunks about one chunk ahead of the consumer; frames come out one at a
time with exactly their share of the audio. The event loop only copies and queues.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator

from app.avatar.engine import AvatarEngine
from app.avatar.engine_thread import EngineThread
from app.avatar.frames import AvatarFrame, VideoFormat
from app.avatar.messages import (
    Audio,
    Clear,
    Close,
    NextSpeaker,
    PcmIn,
    SegmentEnd,
    SetSpeaker,
    Taken,
)
from avatar_engine import MAX_RATE, MIN_RATE, SceneConditioning

logger = logging.getLogger(__name__)


class AvatarVideoGenerator(VideoGenerator):
    """Streams one scene: frames of listening characters between segments, of the current
    speaker while a segment's audio plays. Claims the engine until aclose()."""

    def __init__(
        self,
        *,
        engine: AvatarEngine,
        scene: SceneConditioning,
        sample_rate: int = 24000,
        seed: int = 0,
        lead_frames: int | None = None,
        video_format: VideoFormat = "rgba",
    ):
        """Args:
        sample_rate: of the published audio; pushed audio at another rate is resampled.
        lead_frames: frames kept ready ahead of the consumer (default one chunk; two let a
            disaggregated runtime overlap the next chunk's DiT with this one's decode).
        video_format: "rgba" (what rtc.VideoSource takes) or "rgb24".
        """
        scene.validate(engine.preset.dit, engine.preset.stream)
        if scene.streams != 1:
            raise ValueError(f"a generator streams one scene, got a batch of {scene.streams}")
        self._engine, self._scene = engine, scene
        self._engine_thread = EngineThread(
            engine,
            scene,
            rate=sample_rate,
            seed=seed,
            lead_frames=lead_frames or engine.preset.stream.video_frames_per_chunk,
            video_format=video_format,
            deliver=self._deliver_threadsafe,
        )
        self.sample_rate, self.fps = sample_rate, engine.fps
        self._epoch = 0
        self._frames: deque[AvatarFrame] = deque()  # ready, not yet taken
        self._ready = asyncio.Event()
        self._speaker = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._closed = False

    @property
    def speaker(self) -> int:
        return self._speaker

    def set_speaker(self, index: int) -> None:
        """Character `index` speaks the segments from the next chunk on; the others listen."""
        self._check_speaker(index)
        self._speaker = index
        self._engine_thread.inbox.put(SetSpeaker(index))

    def set_next_speaker(self, index: int) -> None:
        """Character `index` speaks the next segment pushed, all of it, even if the floor
        changes while it plays: for audio that arrives ahead of its playout with each
        segment's speaker named (a remote agent's data streams)."""
        self._check_speaker(index)
        self._engine_thread.inbox.put(NextSpeaker(self._epoch, index))

    def _check_speaker(self, index: int) -> None:
        if not 0 <= index < self._scene.num_characters:
            raise ValueError(
                f"speaker {index} is not one of the scene's {self._scene.num_characters} characters"
            )

    # ---- VideoGenerator ------------------------------------------------------------------

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        self._start()
        if self._error is not None:
            raise RuntimeError("the avatar engine failed") from self._error
        if isinstance(frame, AudioSegmentEnd):
            self._engine_thread.inbox.put(SegmentEnd(self._epoch))
            return
        if not MIN_RATE <= frame.sample_rate <= MAX_RATE or frame.num_channels < 1:
            raise ValueError(
                f"audio of {frame.sample_rate} Hz and {frame.num_channels} channels: the avatar "
                f"takes {MIN_RATE}..{MAX_RATE} Hz, one channel or more"
            )
        samples = np.frombuffer(frame.data, dtype=np.int16).copy()  # [N * C]
        if len(samples):
            pcm = PcmIn(samples=samples, rate=frame.sample_rate, channels=frame.num_channels)
            self._engine_thread.inbox.put(Audio(self._epoch, pcm))

    async def clear_buffer(self) -> None:
        """Barge-in: drop the audio not yet played and the frames not yet taken; the next
        chunk is silent. Returns at once (the engine thread catches up in order)."""
        self._epoch += 1
        dropped = len(self._frames)
        self._frames.clear()
        self._engine_thread.inbox.put(Clear(self._epoch))
        logger.debug("clear_buffer", extra={"epoch": self._epoch, "dropped_frames": dropped})

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        """The livekit stream: each VideoFrame, then its AudioFrame only when it carries a
        segment's audio (AvatarRunner counts every AudioFrame as playback), then
        AudioSegmentEnd after a segment's last audio. A clear_buffer while a frame goes out
        drops the rest of it: AvatarRunner has reported the segment interrupted, and would
        count that audio as the next segment's start."""
        return self._livekit_items()

    async def _livekit_items(
        self,
    ) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        async for frame in self.frames():
            epoch = self._epoch
            yield frame.video
            if frame.in_segment and self._epoch == epoch:
                yield frame.audio
            if frame.segment_end and self._epoch == epoch:
                yield AudioSegmentEnd()

    async def frames(self) -> AsyncGenerator[AvatarFrame, None]:
        """Every frame with its audio (silence while listening), at the consumer's pace.
        One consumer at a time; ends at aclose(), raises if the engine failed."""
        self._start()
        while True:
            if self._frames:
                frame = self._frames.popleft()
                self._engine_thread.inbox.put(Taken(self._epoch, 1))
                yield frame
            elif self._error is not None:
                raise RuntimeError("the avatar engine failed") from self._error
            elif self._closed:
                return
            else:
                self._ready.clear()
                await self._ready.wait()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._engine_thread.inbox.put(Close())
        self._ready.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    # ---- the engine thread ---------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is not None or self._closed:
            return
        if not self._engine.stream_lock.acquire(blocking=False):
            raise RuntimeError(
                "this engine is already streaming for another generator: aclose() that one "
                "first (a runtime serves one stream at a time)"
            )
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="avatar-engine", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._engine_thread.run()
        except BaseException as exc:
            logger.exception("avatar engine failed", extra={"epoch": self._engine_thread.epoch})
            self._call_soon(self._fail, exc)
        finally:
            self._engine.stream_lock.release()

    def _deliver_threadsafe(self, epoch: int, frames: list[AvatarFrame]) -> None:
        self._call_soon(self._deliver, epoch, frames)

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to take frames
            self._engine_thread.inbox.put(Close())

    def _deliver(self, epoch: int, frames: list[AvatarFrame]) -> None:
        if epoch != self._epoch or self._closed:
            return  # cleared while on its way
        self._frames.extend(frames)
        self._ready.set()

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        self._ready.set()
