"""Test ends of an AgentSession: a user who talks at real time and a real-time audio playout."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass

import numpy as np
from livekit import rtc
from livekit.agents import utils
from livekit.agents.voice import io
from livekit.agents.voice.avatar import AudioSegmentEnd, QueueAudioOutput

logger = logging.getLogger(__name__)
JITTER_S = 0.02  # scheduling lateness the playout absorbs without a gap


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


@dataclass
class Segment:
    """One reply as it was played out."""

    started_at: float  # time.monotonic() of its first audio
    played_s: float = 0.0  # audio played out (reported as the playback position)
    interrupted: bool = False
    gaps_s: float = 0.0  # silence inserted because the audio came late (an underrun)
    ended_at: float | None = None  # time.monotonic() of its end or of the clear


class Playout:
    """Plays a QueueAudioOutput at real time in video-frame pieces, reporting as AvatarRunner does.

    Stands in for app/avatar's AvatarPlayout: notify_playback_started on the first audio of a
    segment, notify_playback_finished at its AudioSegmentEnd or on clear_buffer (interrupted).
    """

    def __init__(self, *, audio: QueueAudioOutput, piece_ms: int = 40) -> None:
        self._audio = audio
        self._piece_ms = piece_ms
        self.segments: list[Segment] = []
        self.cleared = 0  # clear_buffer events received
        self._current: Segment | None = None
        self._bstream: utils.audio.AudioByteStream | None = None
        self._clock = 0.0  # loop time at which the piece being played ends
        self._piece: tuple[float, float] | None = None  # (loop start, duration) playing now
        self._generation = 0  # bumped by a clear: pieces of an older one are dropped
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._audio.on("clear_buffer", self._on_clear)
        self._task = asyncio.create_task(self._run(), name="Playout._run")

    async def aclose(self) -> None:
        self._audio.off("clear_buffer", self._on_clear)
        if self._task is not None:
            await utils.aio.cancel_and_wait(self._task, *self._tasks)

    @property
    def position(self) -> float:
        return self._current.played_s if self._current else 0.0

    async def wait_until(self, predicate, *, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _run(self) -> None:
        async for item in self._audio:
            if isinstance(item, AudioSegmentEnd):
                if self._bstream is not None:
                    await self._play(self._bstream.flush())
                if self._current is not None:
                    self._finish(interrupted=False)
                await self._notify()
                continue
            if self._current is None:
                self._begin(item)
            assert self._bstream is not None
            await self._play(self._bstream.write(item.data.tobytes()))

    def _begin(self, frame: rtc.AudioFrame) -> None:
        piece = frame.sample_rate * self._piece_ms // 1000
        self._bstream = utils.audio.AudioByteStream(frame.sample_rate, 1, piece)
        self._audio.notify_playback_started()  # its listeners run first: playing starts after
        self._clock = asyncio.get_running_loop().time()
        self._current = Segment(started_at=time.monotonic())

    async def _play(self, pieces: list[rtc.AudioFrame]) -> None:
        generation = self._generation
        loop = asyncio.get_running_loop()
        for piece in pieces:
            # a late wake-up is absorbed like a device buffer would; audio that came late
            # (an underrun) leaves a gap in the playout
            start = self._clock
            if loop.time() - self._clock > JITTER_S:
                start = loop.time()
                if self._current is not None and self._current.played_s > 0:
                    self._current.gaps_s += start - self._clock
            self._clock = start + piece.duration
            self._piece = (start, piece.duration)
            await asyncio.sleep(self._clock - loop.time())
            if generation != self._generation or self._current is None:
                return  # cleared while this piece played; _on_clear counted its part
            self._piece = None
            self._current.played_s += piece.duration
            await self._notify()

    def _finish(self, *, interrupted: bool) -> None:
        assert self._current is not None
        seg, self._current = self._current, None
        seg.interrupted, seg.ended_at = interrupted, time.monotonic()
        self.segments.append(seg)
        self._bstream = None
        self._audio.notify_playback_finished(
            playback_position=seg.played_s, interrupted=interrupted
        )
        logger.debug("segment played", extra={"played_s": seg.played_s, "interrupted": interrupted})

    def _on_clear(self) -> None:
        self.cleared += 1
        self._generation += 1
        task = asyncio.create_task(self._notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._current is None:
            return  # nothing playing: AvatarRunner reports only a segment that played
        if self._piece is not None:  # the piece under way plays up to now, then stops
            start, duration = self._piece
            now = asyncio.get_running_loop().time()
            self._current.played_s += min(max(now - start, 0.0), duration)
            self._piece = None
        self._finish(interrupted=True)
