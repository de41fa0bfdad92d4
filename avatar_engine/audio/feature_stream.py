"""Speech in, per-chunk audio windows out, as soon as each chunk's audio has arrived.

The stream follows the video timeline: audio sample 0 is the start of video frame 0 of the chunk
the stream (or the turn, after reset/end_of_turn) starts at. Chunk t's features are the ±2
latent-frame windows of its 3 latent frames; they are computed once the audio reaches 2 latent
frames past the chunk's end (the look-ahead), on a fixed-length window, so the cost per chunk is
constant and the result does not depend on how the audio was split into pushes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avatar_engine.audio.encoder import SpeechEncoder
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.audio.pcm import to_mono
from avatar_engine.audio.resample import StreamingResampler

MAX_PUSH_S = 60.0


@dataclass(frozen=True)
class ChunkFeatures:
    """One chunk's speech conditioning, ready for StreamSession.next_chunk."""

    index: int  # chunk index in the video stream
    features: torch.Tensor  # [Fc, W, Da] each latent frame's window of per-video-frame features
    speech_latent_frames: int  # latent frames of the chunk that hold pushed audio (not padding)


class SpeechFeatureStream:
    """Accepts audio pushes of any size, rate and layout; yields ChunkFeatures in order."""

    def __init__(
        self,
        encoder: SpeechEncoder,
        geometry: FrameGeometry,
        *,
        start_chunk: int = 0,
        max_push_s: float = MAX_PUSH_S,
    ):
        self.encoder, self.geometry, self.max_push_s = encoder, geometry, max_push_s
        self.resampler: StreamingResampler | None = None
        self._restart(start_chunk)

    @property
    def lookahead_s(self) -> float:
        """Audio a chunk needs beyond its own end: 2 latent frames."""
        return self.geometry.lookahead_s

    def push(
        self, audio: bytes | np.ndarray | torch.Tensor, sample_rate: int, *, channels: int = 1
    ) -> list[ChunkFeatures]:
        """Add audio; returns the chunks it completes (often none). A bad push raises and
        leaves the stream as it was."""
        wave = to_mono(audio, sample_rate, channels=channels, max_seconds=self.max_push_s)
        if self.resampler is not None and self.resampler.in_rate != sample_rate:
            if self.resampler.received:
                raise ValueError(
                    f"this turn is {self.resampler.in_rate} Hz audio; got {sample_rate} Hz. "
                    "Call end_of_turn() or reset() before changing the rate."
                )
            self.resampler = None
        if self.resampler is None:
            self.resampler = StreamingResampler(sample_rate, self.geometry.sample_rate)
        self._append(self.resampler.push(wave))
        return self._emit(self._ready_until())

    def end_of_turn(self) -> list[ChunkFeatures]:
        """Pad the turn with silence so its last chunk comes out; the next audio starts the
        chunk after it."""
        if self.resampler is not None:
            self._append(self.resampler.flush())
        speech_end = self._end
        start_chunk = self._next
        if speech_end > self.geometry.chunk_start_sample(self._next):
            last = self.geometry.chunk_of_frame((speech_end - 1) // self.geometry.samples_per_frame)
            padding = self.geometry.needed_samples(last) - self._end
            self._append(torch.zeros(max(padding, 0), dtype=torch.float64))
            start_chunk = last + 1
        chunks = self._emit(start_chunk, speech_end=speech_end)
        self._rewind(start_chunk)
        return chunks

    def reset(self, start_chunk: int | None = None) -> None:
        """Barge-in: drop audio not yet turned into features and forget the past, so nothing
        stale reaches the next chunk. The next audio starts chunk start_chunk (default: the
        next chunk)."""
        self._restart(self._next if start_chunk is None else start_chunk)

    # ---- internals -----------------------------------------------------------------------

    def _restart(self, chunk: int) -> None:
        if self.resampler is not None:
            self.resampler.reset()
        self._next = chunk
        self._turn_start = self.geometry.chunk_start_sample(chunk)  # where pushed audio begins
        self._origin = self._turn_start  # absolute sample index of _buffer[0]
        self._buffer = torch.zeros(0, dtype=torch.float64)
        self._end = self._origin  # absolute sample index after the last sample

    def _rewind(self, chunk: int) -> None:
        """Keep the past as context; cut what lies at or after the chunk's start."""
        self._next = chunk
        cut = self.geometry.chunk_start_sample(chunk)
        self._buffer = self._buffer[: cut - self._origin]
        self._end = self._turn_start = cut

    def _append(self, samples: torch.Tensor) -> None:
        self._buffer = torch.cat([self._buffer, samples])
        self._end += samples.numel()

    def _ready_until(self) -> int:
        """The first chunk whose audio has not fully arrived."""
        chunk = self._next
        while self.geometry.needed_samples(chunk) <= self._end:
            chunk += 1
        return chunk

    def _window(self, chunk: int) -> torch.Tensor:
        """[S] the encoder's input for a chunk: context, windows, look-ahead; zeros where no
        audio was pushed (before the stream or after reset)."""
        g = self.geometry
        start = (g.span_start_frame(chunk) - self.encoder.context_frames) * g.samples_per_frame
        end = g.needed_samples(chunk)
        window = torch.zeros(end - start, dtype=torch.float64)
        lo, hi = max(start, self._origin), min(end, self._end)
        if hi > lo:
            window[lo - start : hi - start] = self._buffer[lo - self._origin : hi - self._origin]
        return window

    def _emit(self, until: int, *, speech_end: int | None = None) -> list[ChunkFeatures]:
        """Features of chunks _next .. until-1."""
        end = self._end if speech_end is None else speech_end
        out = [
            ChunkFeatures(
                index=t,
                features=self._features(t),
                speech_latent_frames=self._speech_latents(t, end),
            )
            for t in range(self._next, until)
        ]
        self._next = max(until, self._next)
        self._trim()
        return out

    def _features(self, chunk: int) -> torch.Tensor:
        """[Fc, W, Da]. One encoder call per chunk, always the same shape, so the result is
        the same bits however the audio was pushed."""
        g = self.geometry
        with torch.inference_mode():
            frames = self.encoder(self._window(chunk)[None].float())[0, -g.span_frames :]
        per_latent = frames.unfold(0, g.window_frames, g.frames_per_latent)  # [Fc, Da, W]
        return per_latent.transpose(1, 2).float()  # [Fc, W, Da]

    def _speech_latents(self, chunk: int, speech_end: int) -> int:
        g = self.geometry
        if speech_end <= self._turn_start:
            return 0
        first = chunk * g.chunk_latent_frames
        last = g.latent_of_frame((speech_end - 1) // g.samples_per_frame)
        starts = g.latent_of_frame(self._turn_start // g.samples_per_frame)
        return max(0, min(last + 1, first + g.chunk_latent_frames) - max(first, starts))

    def _trim(self) -> None:
        """Drop samples no future window reads."""
        g = self.geometry
        keep = (g.span_start_frame(self._next) - self.encoder.context_frames) * g.samples_per_frame
        if keep > self._origin:
            self._buffer = self._buffer[keep - self._origin :]
            self._origin = keep


def extract_features(
    encoder: SpeechEncoder,
    geometry: FrameGeometry,
    audio: bytes | np.ndarray | torch.Tensor,
    sample_rate: int,
    *,
    channels: int = 1,
) -> list[ChunkFeatures]:
    """Offline: every chunk of one whole utterance (padded with silence at its end)."""
    stream = SpeechFeatureStream(encoder, geometry)
    wave = to_mono(audio, sample_rate, channels=channels, max_seconds=float("inf"))
    piece = int(MAX_PUSH_S * sample_rate)  # the stream is split-invariant, so any split will do
    chunks = [
        c
        for i in range(0, wave.numel(), piece)
        for c in stream.push(wave[i : i + piece], sample_rate)
    ]
    return chunks + stream.end_of_turn()
