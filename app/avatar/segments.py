"""A reply's audio placed on the video timeline, from its first frame to its end."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from app.avatar.messages import PcmIn
from avatar_engine import INT16_SCALE, ChunkFeatures, StreamingResampler, Timeline, to_mono

MAX_PUSH_S = 3600.0  # one rtc.AudioFrame is milliseconds long; this only guards nonsense


@dataclass
class Segment:
    """One segment's audio (at the output rate) and its speech features, waiting to play.

    Its first sample plays at the first video frame of chunk `anchor`; the chunks from there
    on are driven by its features until the chunk that holds its last sample."""

    rate: int  # output (and feature input) sample rate
    anchor: int = 0  # chunk whose first video frame plays sample 0
    first_frame: int = 0  # that frame's stream index
    audio: bytearray = field(default_factory=bytearray)  # int16 mono, as pushed so far
    features: deque[ChunkFeatures] = field(default_factory=deque)  # computed, not submitted
    submitted: int = 0  # chunks of this segment given to the runtime
    end_frame: int | None = None  # one past its last frame; known at AudioSegmentEnd
    resampler: StreamingResampler | None = None  # pushed rate -> rate, when they differ
    speaker: int | None = None  # who speaks it; None: whoever has the floor chunk by chunk

    @property
    def samples(self) -> int:
        return len(self.audio) // 2

    @property
    def ended(self) -> bool:
        return self.end_frame is not None

    @property
    def submitting(self) -> bool:
        """Chunks of it remain to be submitted (or their audio to come)."""
        return not self.ended or bool(self.features)

    def pcm(self) -> np.ndarray:
        """[N] int16, everything pushed so far."""
        return np.frombuffer(self.audio, dtype=np.int16)

    def convert(self, pcm: PcmIn) -> np.ndarray:
        """[M] int16 mono at the output rate. Mono audio at the output rate passes untouched,
        so the published audio is bit-exact what was pushed."""
        if pcm.channels == 1 and pcm.rate == self.rate and self.resampler is None:
            return pcm.samples
        wave = to_mono(pcm.samples, pcm.rate, channels=pcm.channels, max_seconds=MAX_PUSH_S)
        if pcm.rate != self.rate:
            if self.resampler is None or self.resampler.in_rate != pcm.rate:
                self.resampler = StreamingResampler(pcm.rate, self.rate)
            wave = self.resampler.push(wave)
        return _to_int16(wave)

    def flush(self) -> np.ndarray:
        """[M] int16: what the resampler still holds, at the segment's end."""
        if self.resampler is None:
            return np.zeros(0, dtype=np.int16)
        return _to_int16(self.resampler.flush())

    def covers(self, frame: int) -> bool:
        return self.first_frame <= frame and (self.end_frame is None or frame < self.end_frame)

    def audio_for(self, frame: int, timeline: Timeline) -> np.ndarray:
        """[timeline.samples_in(frame)] int16: the segment's samples that play with this
        frame, zero-padded past its end."""
        origin = timeline.sample(self.first_frame)
        lo, hi = timeline.sample(frame) - origin, timeline.sample(frame + 1) - origin
        out = np.zeros(hi - lo, dtype=np.int16)
        have = self.pcm()[lo:hi]
        out[: len(have)] = have
        return out


def _to_int16(wave: torch.Tensor) -> np.ndarray:
    """Args: wave: [N] float in [-1, 1]."""
    return (wave * INT16_SCALE).round().clamp(-32768, 32767).to(torch.int16).numpy()
