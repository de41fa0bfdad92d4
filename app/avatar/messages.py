"""What the event loop tells the engine thread, in one FIFO inbox."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PcmIn:
    """One pushed rtc.AudioFrame, copied off the event loop."""

    samples: np.ndarray  # [N * C] int16, interleaved
    rate: int
    channels: int


@dataclass(frozen=True)
class Audio:
    """Segment audio: the first after a segment end (or a clear) starts a new segment."""

    epoch: int  # of the clear_buffer it follows; older ones are dropped
    pcm: PcmIn


@dataclass(frozen=True)
class SegmentEnd:
    """The current segment's audio is complete."""

    epoch: int


@dataclass(frozen=True)
class Clear:
    """Barge-in: drop every segment and every frame made before it."""

    epoch: int  # the new epoch


@dataclass(frozen=True)
class Taken:
    """The consumer took frames: the lead shrinks."""

    epoch: int  # of the frames taken
    frames: int


@dataclass(frozen=True)
class SetSpeaker:
    """Who speaks the segments, from the next chunk submitted on."""

    index: int  # character in the scene


@dataclass(frozen=True)
class NextSpeaker:
    """Who speaks the next segment to start, whoever has the floor when its chunks are made
    (a remote agent's segments arrive ahead of their playout, named in order)."""

    epoch: int
    index: int  # character in the scene


@dataclass(frozen=True)
class Close:
    """End the session and the thread."""


Message = Audio | SegmentEnd | Clear | Taken | SetSpeaker | NextSpeaker | Close
