"""Speech known in advance (whole turns, one speaker each) laid on the video timeline the way
the live stream lays it: each turn starts at the chunk after the previous turn's last chunk,
its features come from SpeechFeatureStream (so an offline render conditions every chunk on
exactly what a live stream of the same audio would), and nobody speaks in between."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from avatar_engine.audio.encoder import SpeechEncoder
from avatar_engine.audio.feature_stream import SpeechFeatureStream
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.audio.routing import route_to_speaker
from avatar_engine.config import Preset


@dataclass(frozen=True)
class Turn:
    """One speaker's speech, spoken after the turns before it."""

    speaker: int  # index of the character who speaks (its face box in the scene)
    audio: np.ndarray  # [S] float mono in [-1, 1]
    rate: int  # Hz of audio


@dataclass(frozen=True)
class TurnPlan:
    """Which character speaks in which chunk, with what features, and where each turn's
    audio starts."""

    geometry: FrameGeometry
    turns: tuple[Turn, ...]
    starts: tuple[int, ...]  # per turn: the chunk whose first frame its first sample is on
    features: dict[int, tuple[int, torch.Tensor]]  # chunk -> (speaker, [Fc, W, Da])
    feature_shape: tuple[int, int, int]  # (Fc, W, Da), for chunks nobody speaks in

    def inputs(self, chunk: int, characters: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk `chunk`'s features [1, K, Fc, W, Da] and speaking flags [1, K]: the speech
        routed to its speaker, everyone else (everyone, between turns) listening."""
        speaker, features = self.features.get(chunk, (None, None))
        return route_to_speaker(features, speaker, characters, feature_shape=self.feature_shape)

    def audio(self, rate: int) -> np.ndarray:
        """[S] float32 at `rate` (every turn's rate): the turns at their start frames,
        silence between them; sample 0 is the start of video frame 0."""
        if any(t.rate != rate for t in self.turns):
            raise ValueError(f"the turns are not all at {rate} Hz: resample them first")
        g = self.geometry
        placed = [round(g.chunk_start_frame(c) * rate / g.fps) for c in self.starts]
        total = max((s + len(t.audio) for s, t in zip(placed, self.turns, strict=True)), default=0)
        out = np.zeros(total, dtype=np.float32)
        for start, turn in zip(placed, self.turns, strict=True):
            out[start : start + len(turn.audio)] = turn.audio
        return out


def plan_turns(encoder: SpeechEncoder, preset: Preset, turns: Sequence[Turn]) -> TurnPlan:
    """Compute every chunk's speech features for turns spoken one after another."""
    geometry = FrameGeometry.of_preset(preset)
    stream = SpeechFeatureStream(encoder, geometry)
    features: dict[int, tuple[int, torch.Tensor]] = {}
    starts = []
    for turn in turns:
        if len(turn.audio) == 0:
            raise ValueError(f"turn {len(starts)} (speaker {turn.speaker}) has no audio")
        first = max(features, default=-1) + 1  # the chunk after the last one spoken in
        stream.reset(start_chunk=first)
        starts.append(first)
        # A second at a time (the stream is split-invariant): a turn may be longer than the
        # most one push takes.
        chunks = [
            c
            for i in range(0, len(turn.audio), turn.rate)
            for c in stream.push(turn.audio[i : i + turn.rate], turn.rate)
        ]
        for c in chunks + stream.end_of_turn():
            features[c.index] = (turn.speaker, c.features)
    shape = (
        preset.stream.chunk_latent_frames,
        preset.dit.audio_window_frames,
        preset.dit.audio_feature_dim,
    )
    return TurnPlan(geometry, tuple(turns), tuple(starts), features, shape)
