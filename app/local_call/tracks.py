"""The avatar's frames as aiortc tracks: one video and one audio track stamped from one clock.

AvatarPlayout hands each AvatarFrame to `AvatarTracks.push` at the frame's real time. Its
picture becomes the next video frame (90 kHz pts, one frame period apart) and its audio,
resampled to 48 kHz (what Opus wants), is cut into 20 ms frames whose pts count the samples
sent. Both pts therefore count the same frames, sequentially: stream indices jump after a
barge-in drops frames, so they are never used for RTP. aiortc pulls each track with `recv()`,
which waits for the playout, so packets leave at the time their pts says on both tracks.
"""

from __future__ import annotations

import asyncio
import collections
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from app.avatar.frames import AvatarFrame

VIDEO_CLOCK = 90000  # RTP video clock rate
OPUS_RATE = 48000  # Opus' rate
OPUS_FRAME = OPUS_RATE * 20 // 1000  # samples in 20 ms
MAX_QUEUED_S = 1.0  # a track its sender stopped pulling keeps this much, dropping the oldest
PIXEL_FORMATS = {4: "rgba", 3: "rgb24"}  # bytes per pixel of the generator's frames


class QueueTrack(MediaStreamTrack):
    """A track whose `recv()` hands out queued frames in order, waiting for the next one."""

    def __init__(self, kind: str, *, max_frames: int) -> None:
        super().__init__()
        self.kind = kind
        self._frames: collections.deque[av.AudioFrame | av.VideoFrame] = collections.deque(
            maxlen=max_frames
        )
        self._ready = asyncio.Event()

    def put(self, frame: av.AudioFrame | av.VideoFrame) -> None:
        self._frames.append(frame)
        self._ready.set()

    async def recv(self) -> av.AudioFrame | av.VideoFrame:
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()  # a waiting recv() sees the track ended


class AvatarTracks:
    """The sink of one call's AvatarPlayout and the two tracks it feeds."""

    def __init__(self, *, fps: int) -> None:
        self.fps = fps
        self.video = QueueTrack("video", max_frames=round(MAX_QUEUED_S * fps))
        self.audio = QueueTrack("audio", max_frames=round(MAX_QUEUED_S * OPUS_RATE / OPUS_FRAME))
        self.frames = 0  # video frames pushed
        self._samples = 0  # 48 kHz samples sent in audio frames
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=OPUS_RATE)
        self._fifo = av.AudioFifo()

    def push(self, frame: AvatarFrame) -> None:
        """One frame's picture and its audio onto the tracks (AvatarPlayout's sink)."""
        video = frame.video
        pixels = np.frombuffer(video.data, dtype=np.uint8)
        pixels = pixels.reshape(video.height, video.width, -1)  # [H, W, 4 or 3]
        picture = av.VideoFrame.from_ndarray(pixels, format=PIXEL_FORMATS[pixels.shape[2]])
        picture.pts = round(self.frames * VIDEO_CLOCK / self.fps)
        picture.time_base = Fraction(1, VIDEO_CLOCK)
        self.frames += 1
        self.video.put(picture)

        audio = frame.audio  # mono int16
        samples = np.frombuffer(audio.data, dtype=np.int16).reshape(1, -1)  # [1, N]
        sound = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        sound.sample_rate = audio.sample_rate
        for resampled in self._resampler.resample(sound):
            resampled.pts = None  # the fifo keeps its own count
            self._fifo.write(resampled)
        while self._fifo.samples >= OPUS_FRAME:
            out = self._fifo.read(OPUS_FRAME)
            assert out is not None  # the fifo holds OPUS_FRAME samples or more
            out.pts = self._samples
            out.time_base = Fraction(1, OPUS_RATE)
            self._samples += OPUS_FRAME
            self.audio.put(out)

    def stop(self) -> None:
        self.video.stop()
        self.audio.stop()
