"""A user who talks to an AgentSession at real time, what the avatar plays back, and a polling
wait."""

from __future__ import annotations

import asyncio
import collections
import time

import numpy as np
from livekit import rtc
from livekit.agents.voice import io

from app.avatar import AvatarFrame


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


class PlayedFrames:
    """AvatarPlayout's sink: every frame it plays, with the monotonic time it played it."""

    def __init__(self) -> None:
        self.timed: list[tuple[float, AvatarFrame]] = []

    def __call__(self, frame: AvatarFrame) -> None:
        self.timed.append((time.monotonic(), frame))

    def __len__(self) -> int:
        return len(self.timed)

    def since(self, t: float = 0.0) -> list[AvatarFrame]:
        return [f for played_at, f in self.timed if played_at >= t]

    def segments(self) -> list[list[AvatarFrame]]:
        """Runs of frames with a segment's audio (a cut one ends without segment_end)."""
        runs: list[list[AvatarFrame]] = [[]]
        for frame in self.since():
            if frame.in_segment:
                runs[-1].append(frame)
            if (frame.segment_end or not frame.in_segment) and runs[-1]:
                runs.append([])
        return [run for run in runs if run]

    def finished(self) -> list[list[AvatarFrame]]:
        """The segments played to their end."""
        return [run for run in self.segments() if run[-1].segment_end]


def assert_av_pairing(
    frames: list[AvatarFrame], *, rate: int, fps: int, contiguous: bool = True
) -> None:
    """Every video frame carries exactly 1/fps of audio, in order; none skipped unless a
    clear_buffer dropped frames that were made but not played."""
    assert all(f.audio.samples_per_channel * fps == rate for f in frames)
    assert all(f.audio.sample_rate == rate for f in frames)
    indices = [f.index for f in frames]
    assert all(a < b for a, b in zip(indices, indices[1:], strict=False))
    assert all(abs(f.pts - f.index / fps) < 1e-9 for f in frames)
    if contiguous:
        assert indices == list(range(indices[0], indices[0] + len(indices)))
