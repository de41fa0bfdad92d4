"""The browser's microphone, received by aiortc, as the AgentSession's audio input."""

from __future__ import annotations

import collections

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from livekit import rtc
from livekit.agents.voice import io


class MicrophoneInput(io.AudioInput):
    """Frames of the remote audio track, resampled to mono int16 at `sample_rate`; ends when
    the track does (the peer left)."""

    def __init__(self, track: MediaStreamTrack, *, sample_rate: int) -> None:
        super().__init__(label="local-call-microphone")
        self._track = track
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        self._ready: collections.deque[rtc.AudioFrame] = collections.deque()

    async def __anext__(self) -> rtc.AudioFrame:
        while not self._ready:
            try:
                received = await self._track.recv()
            except MediaStreamError:
                raise StopAsyncIteration from None
            for frame in self._resampler.resample(received):
                pcm = frame.to_ndarray()  # [1, N] int16
                self._ready.append(
                    rtc.AudioFrame(pcm.tobytes(), frame.sample_rate, 1, pcm.shape[1])
                )
        return self._ready.popleft()
