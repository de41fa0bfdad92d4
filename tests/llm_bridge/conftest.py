"""Audio in and out of an AgentSession without a room: espeak-ng speech fed at real time, and
an output that keeps what the session plays, one segment per reply."""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field

import numpy as np
from livekit import rtc
from livekit.agents.voice.io import AudioInput, AudioOutput, AudioOutputCapabilities

from llm_bridge.offline.tts import SAMPLE_RATE, find_espeak

FRAME_S = 0.02  # input frames of 20 ms, as a call delivers them


def espeak(text: str, *, voice: str = "en", rate: int = 165, pitch: int = 50) -> np.ndarray:
    """espeak-ng's int16 samples (22050 Hz) for the text, with the same flags the TTS uses."""
    cmd = [find_espeak(), "--stdout", "-v", voice, "-s", str(rate), "-p", str(pitch)]
    wav = subprocess.run(cmd, input=text.encode(), capture_output=True, check=True).stdout
    return np.frombuffer(wav[44:], dtype=np.int16)


def speech_bounds(samples: np.ndarray, rate: int = SAMPLE_RATE) -> tuple[float, float]:
    """First and last sample above -40 dBFS, in seconds."""
    loud = np.nonzero(np.abs(samples.astype(np.int32)) > 327)[0]
    return loud[0] / rate, (loud[-1] + 1) / rate


class RealTimeAudioInput(AudioInput):
    """Plays samples into the session at real time, then silence, in 20 ms frames."""

    def __init__(self, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
        super().__init__(label="test-input")
        self.samples, self.rate = samples, rate
        self.step = round(rate * FRAME_S)
        self.started_at: float | None = None  # wall time of the first sample
        self._sent = 0

    async def __anext__(self) -> rtc.AudioFrame:
        if self.started_at is None:
            self.started_at = time.time()
        due = self.started_at + self._sent / self.rate
        await asyncio.sleep(max(0.0, due - time.time()))
        chunk = self.samples[self._sent : self._sent + self.step]
        chunk = np.pad(chunk, (0, self.step - len(chunk)))
        self._sent += self.step
        return rtc.AudioFrame(chunk.tobytes(), self.rate, 1, self.step)


@dataclass
class Segment:
    frames: list[rtc.AudioFrame] = field(default_factory=list)
    started_at: float = 0.0  # wall time of the first frame
    played: float = 0.0  # seconds reported played
    interrupted: bool = False

    def samples(self) -> np.ndarray:
        return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in self.frames])

    @property
    def rate(self) -> int:
        return self.frames[0].sample_rate

    @property
    def duration(self) -> float:
        return sum(f.duration for f in self.frames)


class CaptureAudioOutput(AudioOutput):
    """Keeps each segment the session plays. Playback finishes at once, or, with real_time,
    when the segment's audio would have played out; clear_buffer stops it where it is."""

    def __init__(self, *, real_time: bool = False) -> None:
        super().__init__(label="test-output", capabilities=AudioOutputCapabilities(pause=False))
        self.real_time = real_time
        self.segments: list[Segment] = []  # finished ones
        self._current: Segment | None = None  # being captured
        self._playing: tuple[Segment, asyncio.TimerHandle] | None = None  # flushed, not done
        self._changed = asyncio.Event()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._current is None:
            self._current = Segment(started_at=time.time())
            self.on_playback_started(created_at=self._current.started_at)
        self._current.frames.append(frame)

    def flush(self) -> None:
        super().flush()
        segment, self._current = self._current, None
        if segment is None:
            return
        delay = segment.started_at + segment.duration - time.time() if self.real_time else 0.0
        timer = asyncio.get_running_loop().call_later(
            max(0.0, delay), self._finish, segment, segment.duration, False
        )
        self._playing = (segment, timer)

    def clear_buffer(self) -> None:
        segment, self._current = self._current, None
        if segment is None and self._playing is not None:
            segment, timer = self._playing
            timer.cancel()
        if segment is not None:
            played = min(segment.duration, time.time() - segment.started_at)
            self._finish(segment, played, True)

    def _finish(self, segment: Segment, played: float, interrupted: bool) -> None:
        self._playing = None
        segment.played, segment.interrupted = played, interrupted
        self.segments.append(segment)
        self.on_playback_finished(playback_position=played, interrupted=interrupted)
        self._changed.set()

    async def wait_for_segments(self, count: int, *, timeout: float) -> list[Segment]:
        async with asyncio.timeout(timeout):
            while len(self.segments) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.segments
