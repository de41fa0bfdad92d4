"""The browser's microphone, received by aiortc, as the AgentSession's audio input."""

from __future__ import annotations

import collections
import time
from typing import cast

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from livekit import rtc
from livekit.agents.voice import io

# A frame whose loudest sample passes this (about -30 dBFS) has someone speaking in it; what a
# browser sends between words, after its noise suppression, stays well below.
VOICE_PEAK = 1000


class MicrophoneInput(io.AudioInput):
    """Frames of the remote audio track, resampled to mono int16 at `sample_rate`; ends when
    the track does (the peer left). `last_voice` is when a frame last carried a voice
    (time.monotonic(); creation time until then): a call ends once nobody has spoken for
    long."""

    def __init__(self, track: MediaStreamTrack, *, sample_rate: int) -> None:
        super().__init__(label="local-call-microphone")
        self._track = track
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        self._ready: collections.deque[rtc.AudioFrame] = collections.deque()
        self.last_voice = time.monotonic()

    async def __anext__(self) -> rtc.AudioFrame:
        while not self._ready:
            try:
                received = await self._track.recv()
            except MediaStreamError:
                raise StopAsyncIteration from None
            for frame in self._resampler.resample(cast(av.AudioFrame, received)):
                pcm = frame.to_ndarray()  # [1, N] int16
                if pcm.size and int(np.abs(pcm, dtype=np.int32).max()) > VOICE_PEAK:
                    self.last_voice = time.monotonic()
                self._ready.append(
                    rtc.AudioFrame(pcm.tobytes(), frame.sample_rate, 1, pcm.shape[1])
                )
        return self._ready.popleft()
