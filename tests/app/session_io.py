"""A user who talks to an AgentSession at real time, and a polling wait."""

from __future__ import annotations

import asyncio
import collections
import time

import numpy as np
from livekit import rtc
from livekit.agents.voice import io


def voiced(seconds: float, *, rate: int, f0: float = 140.0, amplitude: float = 0.3) -> np.ndarray:
    """Speech-like int16 audio: a harmonic tone with 4 Hz syllables, exactly `seconds` long."""
    t = np.arange(round(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
    syllables = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 2.0 * t))
    return (amplitude * 32767 * tone * syllables / 1.84).astype(np.int16)


class UserAudio(io.AudioInput):
    """The session's microphone: what the test says, else silence, in 20 ms frames at real time."""

    def __init__(self, *, sample_rate: int = 48000, frame_ms: int = 20) -> None:
        super().__init__(label="test-user")
        self._rate = sample_rate
        self._frame = sample_rate * frame_ms // 1000
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._clock: float | None = None  # loop time at which the next frame is due
        self._open = asyncio.Event()
        self._open.set()
        self.sent_samples = 0  # everything delivered, silence included

    def say(self, pcm: np.ndarray) -> None:
        self._queue.append(pcm.astype(np.int16))

    def mute(self) -> None:
        """Stop delivering frames (a paused microphone), so counts can be compared."""
        self._open.clear()

    async def __anext__(self) -> rtc.AudioFrame:
        await self._open.wait()
        loop = asyncio.get_running_loop()
        self._clock = max(self._clock or 0.0, loop.time()) + self._frame / self._rate
        await asyncio.sleep(self._clock - loop.time())
        data = np.zeros(self._frame, dtype=np.int16)
        filled = 0
        while filled < self._frame and self._queue:
            take = self._queue[0][: self._frame - filled]
            data[filled : filled + len(take)] = take
            filled += len(take)
            self._queue[0] = self._queue[0][len(take) :]
            if not len(self._queue[0]):
                self._queue.popleft()
        self.sent_samples += self._frame
        return rtc.AudioFrame(data.tobytes(), self._rate, 1, self._frame)


async def wait_for(predicate, *, timeout: float = 5.0, step: float = 0.02) -> None:
    """Poll until predicate() is true; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout} s")
        await asyncio.sleep(step)
