"""Where audio sits in the video stream: samples ↔ video frames ↔ latent frames ↔ chunks.

Timeline maps video frames to samples at any rate (the features' 16 kHz, the published
audio's 24 kHz, a file's 44.1 kHz); FrameGeometry lays the model's latent frames and chunks
over the video frames and reads its samples off a Timeline at the features' rate.

Video frame v covers [v/fps, (v+1)/fps). Latent frame 0 is video frame 0 alone; latent frame
l ≥ 1 is video frames 4l−3 .. 4l. For the audio windows every latent frame spans 4 video frames,
so latent frame 0 spans −3 .. 0, the three before the stream being silence. Chunk t is latent
frames 3t .. 3t+2, and its audio windows reach 2 latent frames past its end: that is the
look-ahead a chunk waits for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from avatar_engine.config import AudioConfig, DiTConfig, Preset, StreamConfig, _derive


@dataclass(frozen=True)
class Timeline:
    """Where video frames start in an audio stream at `rate`: frame v starts at sample
    round(v·rate/fps), so frames hold round(rate/fps) samples and, when fps does not divide
    the rate, the rounding error never accumulates."""

    rate: int
    fps: int

    def sample(self, frame: int) -> int:
        return (2 * frame * self.rate + self.fps) // (2 * self.fps)

    def samples_in(self, frame: int) -> int:
        return self.sample(frame + 1) - self.sample(frame)

    def frames_for(self, first_frame: int, samples: int) -> int:
        """Frames from first_frame that `samples` samples need (the last one padded)."""
        start = self.sample(first_frame)
        n = max(0, -(-samples * self.fps // self.rate) - 1)  # one short of the estimate
        while self.sample(first_frame + n) - start < samples:
            n += 1
        return n


@dataclass(frozen=True)
class FrameGeometry:
    sample_rate: int  # of the features' audio (16 kHz)
    fps: int
    frames_per_latent: int  # video frames per latent frame after the first (VAE temporal stride)
    chunk_latent_frames: int
    window_latent: int  # latent frames of audio context on each side of a latent frame
    # derived
    timeline: Timeline = field(init=False)  # video frames <-> samples at sample_rate
    samples_per_frame: int = field(init=False)
    window_frames: int = field(init=False)  # video frames in one latent frame's window (W)
    span_frames: int = field(init=False)  # video frames whose features one chunk reads
    lookahead_frames: int = field(init=False)  # video frames a chunk needs past its end
    lookahead_s: float = field(init=False)

    def __post_init__(self) -> None:
        if self.sample_rate % self.fps:
            raise ValueError(
                f"{self.sample_rate} Hz audio does not split into whole samples per frame at "
                f"{self.fps} fps; use an fps that divides {self.sample_rate}, such as 25"
            )
        lookahead = self.window_latent * self.frames_per_latent
        _derive(
            self,
            timeline=Timeline(self.sample_rate, self.fps),
            samples_per_frame=self.sample_rate // self.fps,
            window_frames=(2 * self.window_latent + 1) * self.frames_per_latent,
            span_frames=(self.chunk_latent_frames + 2 * self.window_latent)
            * self.frames_per_latent,
            lookahead_frames=lookahead,
            lookahead_s=lookahead / self.fps,
        )

    @classmethod
    def of(cls, dit: DiTConfig, stream: StreamConfig, audio: AudioConfig) -> FrameGeometry:
        return cls(
            sample_rate=audio.sample_rate,
            fps=stream.fps,
            frames_per_latent=dit.temporal_stride,
            chunk_latent_frames=stream.chunk_latent_frames,
            window_latent=dit.audio_window,
        )

    @classmethod
    def of_preset(cls, preset: Preset) -> FrameGeometry:
        return cls.of(preset.dit, preset.stream, preset.audio)

    # ---- frames --------------------------------------------------------------------------

    def frame_of_time(self, seconds: float) -> int:
        return int(seconds * self.fps)

    def latent_of_frame(self, frame: int) -> int:
        return (frame + self.frames_per_latent - 1) // self.frames_per_latent

    def chunk_of_frame(self, frame: int) -> int:
        return self.latent_of_frame(frame) // self.chunk_latent_frames

    def latent_start_frame(self, latent: int) -> int:
        """First video frame of a latent frame's 4-frame span (−3 for latent frame 0)."""
        return self.frames_per_latent * latent - (self.frames_per_latent - 1)

    def latent_frames_for(self, video_frames: int) -> int:
        """Latent frames that n video frames need (the VAE rule: 1 + 4·(n_latent − 1) ≥ n)."""
        return self.latent_of_frame(video_frames - 1) + 1 if video_frames > 0 else 0

    # ---- chunks, in video frames and in samples ------------------------------------------

    def chunk_start_frame(self, chunk: int) -> int:
        return max(0, self.latent_start_frame(chunk * self.chunk_latent_frames))

    def span_start_frame(self, chunk: int) -> int:
        """First video frame the chunk's audio windows read (negative: before the stream)."""
        return self.latent_start_frame(chunk * self.chunk_latent_frames - self.window_latent)

    def chunk_start_sample(self, chunk: int) -> int:
        return self.timeline.sample(self.chunk_start_frame(chunk))

    def needed_samples(self, chunk: int) -> int:
        """Audio samples (from the stream start) the chunk's features need, look-ahead included."""
        return self.timeline.sample(self.span_start_frame(chunk) + self.span_frames)
