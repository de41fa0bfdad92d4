"""Plays a generator out in real time to any sink: livekit's AvatarRunner without a room.

It reads the session's audio from an AudioReceiver (QueueAudioOutput with
wait_playback_start=True), pushes it into the generator, hands one AvatarFrame to the sink
per video frame period, and reports playback to the receiver exactly as AvatarRunner does:
started when a segment's first audio plays, finished (with the position played) after its
last, interrupted at the position played when the receiver clears its buffer.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from livekit import rtc
from livekit.agents.voice.avatar import AudioReceiver

from app.avatar.frames import AvatarFrame
from app.avatar.generator import AvatarVideoGenerator

logger = logging.getLogger(__name__)

FrameSink = Callable[[AvatarFrame], Awaitable[None] | None]
MAX_DELAY_S = 0.3  # later than this (the engine stalled), the clock restarts from now


class AvatarPlayout:
    def __init__(
        self,
        *,
        audio_recv: AudioReceiver,
        video_gen: AvatarVideoGenerator,
        sink: FrameSink,
        max_delay_s: float = MAX_DELAY_S,
    ):
        """Args:
        sink: called with each frame at its time (awaited when it returns an awaitable).
        max_delay_s: how late a frame may be before the clock gives up catching up.
        """
        self._audio_recv, self._video_gen, self._sink = audio_recv, video_gen, sink
        self._period, self._max_delay = 1.0 / video_gen.fps, max_delay_s
        self._playback_position = 0.0  # seconds of the current segment played
        self._audio_playing = False  # a segment's audio has been received and not finished
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    @property
    def playback_position(self) -> float:
        return self._playback_position

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self._audio_recv.start()
        self._audio_recv.on("clear_buffer", self._on_clear_buffer)
        self._spawn(self._read_audio(), name="avatar-playout-read-audio")
        self._spawn(self._play(), name="avatar-playout-play")

    async def aclose(self) -> None:
        """Stop reading and playing (the generator belongs to the caller and stays open)."""
        if self._started:
            self._audio_recv.off("clear_buffer", self._on_clear_buffer)
        await self._audio_recv.aclose()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # ---- tasks ---------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any], *, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "avatar playout task failed",
                exc_info=task.exception(),
                extra={"task": task.get_name()},
            )

    async def _read_audio(self) -> None:
        async for frame in self._audio_recv:
            if not self._audio_playing and isinstance(frame, rtc.AudioFrame):
                self._audio_playing = True
            await self._video_gen.push_audio(frame)

    async def _play(self) -> None:
        """One frame per period. A frame is taken from the generator only when it is due, so
        a clear_buffer while waiting drops it rather than playing it."""
        loop = asyncio.get_running_loop()
        frames = self._video_gen.frames()
        due: float | None = None
        try:
            while True:
                if due is not None and due > loop.time():
                    await asyncio.sleep(due - loop.time())
                try:
                    frame = await anext(frames)
                except StopAsyncIteration:
                    return
                now = loop.time()
                if due is None or now - due > self._max_delay:
                    if due is not None:
                        logger.warning("avatar frames late", extra={"late_s": round(now - due, 3)})
                    due = now
                await self._play_frame(frame)
                due += self._period
        finally:
            await frames.aclose()

    async def _play_frame(self, frame: AvatarFrame) -> None:
        # Counted as it goes out, before any await: a clear_buffer handled meanwhile reports
        # exactly the frames the sink was given.
        if frame.in_segment:
            if self._playback_position == 0.0 and frame.audio.duration > 0.0:
                self._notify(self._audio_recv.notify_playback_started())
            self._playback_position += frame.audio.duration
        delivered = self._sink(frame)
        if inspect.isawaitable(delivered):
            await delivered
        if frame.segment_end and self._audio_playing:
            position, self._playback_position = self._playback_position, 0.0
            self._audio_playing = False
            self._notify(
                self._audio_recv.notify_playback_finished(
                    playback_position=position, interrupted=False
                )
            )

    def _notify(self, result: Awaitable[None] | None) -> None:
        if inspect.isawaitable(result):  # never block the frames on the receiver
            self._spawn(result, name="avatar-playout-notify")

    def _on_clear_buffer(self) -> None:
        audio_playing, self._audio_playing = self._audio_playing, False
        self._spawn(self._handle_clear_buffer(audio_playing), name="avatar-playout-clear")

    async def _handle_clear_buffer(self, audio_playing: bool) -> None:
        cleared = self._video_gen.clear_buffer()
        if inspect.isawaitable(cleared):
            await cleared
        if audio_playing:
            position, self._playback_position = self._playback_position, 0.0
            logger.debug("playback interrupted", extra={"playback_position": position})
            result = self._audio_recv.notify_playback_finished(
                playback_position=position, interrupted=True
            )
            if inspect.isawaitable(result):
                await result
