"""Training clips: a picture with one or two characters, speech for at most one of them, and
the video its motion makes. Deterministic from (seed, index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.framing import Portrait
from avatar_engine.training.data.motion import (
    MotionTrack,
    animate,
    listening_track,
    speech_track,
)
from avatar_engine.training.data.portraits import background, random_portrait
from avatar_engine.training.data.speech import random_utterance
from avatar_engine.training.features import clip_audio_frames

KINDS = ("speaking", "silence", "pair")
KIND_WEIGHTS = (0.55, 0.15, 0.3)


def kind_weights(pair_share: float) -> tuple[float, float, float]:
    """KIND_WEIGHTS with the pairs' share set to pair_share, the others in their ratio."""
    if not 0 <= pair_share <= 1:
        raise ValueError(f"the pairs' share is a fraction, not {pair_share}")
    rest = (1 - pair_share) / (1 - KIND_WEIGHTS[2])
    return (KIND_WEIGHTS[0] * rest, KIND_WEIGHTS[1] * rest, pair_share)


@dataclass(frozen=True)
class Clip:
    """One training example."""

    video: torch.Tensor  # [T, H, W, 3] float in [0, 1]
    reference: torch.Tensor  # [H, W, 3] the still picture the video starts from
    audio: torch.Tensor  # [S] 16 kHz speech of the speaker, sample 0 = frame 0 (with look-ahead)
    speaker: int | None  # who speaks (None: nobody)
    speaking_latents: torch.Tensor  # [K, F] bool, per character and latent frame
    face_boxes: tuple[tuple[float, float, float, float], ...]  # per character
    mouths: tuple[tuple[float, float, float], ...]  # per character: centre x, y, half width
    sources: tuple[str, ...]  # per character: its portrait's ("drawn", "lfw", a photo's name)
    kind: str


def in_slot(p: Portrait, slot: int) -> Portrait:
    """A half-size portrait's landmarks once it sits in column `slot` of a pair's frame."""

    def mx(v: float) -> float:
        return (v + slot) / 2

    def my(v: float) -> float:
        return v / 2 + 0.25

    x0, y0, x1, y1 = p.face_box
    return Portrait(
        p.image,
        (mx(x0), my(y0), mx(x1), my(y1)),
        (mx(p.mouth[0]), my(p.mouth[1]), p.mouth[2] / 2),
        tuple((mx(ex), my(ey), ew / 2) for ex, ey, ew in p.eyes),
        p.source,
    )


def compose_pair(rng: np.random.Generator, size: int, held_out: bool) -> tuple[torch.Tensor, list]:
    """Two characters side by side on one background."""
    canvas = background(rng, size)
    half, top = size // 2, size // 4
    people = []
    for slot in range(2):
        p = random_portrait(rng, half, held_out=held_out)
        canvas[top : top + half, slot * half : (slot + 1) * half] = p.image
        people.append(in_slot(p, slot))
    return canvas, people


def _chunk_flags(active: np.ndarray, geometry: FrameGeometry, latents: int) -> torch.Tensor:
    """[F] speaking per latent frame, decided per chunk as in streaming: a chunk speaks when
    any of its frames holds speech."""
    flags = torch.zeros(latents, dtype=torch.bool)
    per = geometry.chunk_latent_frames
    for chunk in range(latents // per):
        lo = geometry.chunk_start_frame(chunk)
        hi = geometry.chunk_start_frame(chunk + 1)
        flags[chunk * per : (chunk + 1) * per] = bool(active[lo:hi].any())
    return flags


def make_clip(
    seed: int,
    index: int,
    *,
    geometry: FrameGeometry,
    size: int,
    latent_frames: int,
    held_out: bool = False,
    kind: str | None = None,
    kind_weights: tuple[float, float, float] = KIND_WEIGHTS,
) -> Clip:
    """Clip `index` of the stream of clips `seed` makes; kind_weights are the KINDS' odds."""
    rng = np.random.default_rng([seed, index, int(held_out)])
    kind = kind or str(rng.choice(KINDS, p=kind_weights))
    frames = 1 + geometry.frames_per_latent * (latent_frames - 1)
    rate, fps = geometry.sample_rate, geometry.fps
    audio_frames = clip_audio_frames(geometry, latent_frames)
    if kind == "pair":
        picture, people = compose_pair(rng, size, held_out)
    else:
        person = random_portrait(rng, size, held_out=held_out)
        picture, people = person.image, [person]
    audio = np.zeros(audio_frames * geometry.samples_per_frame, dtype=np.float32)
    speaker = None if kind == "silence" else int(rng.integers(len(people)))
    if speaker is not None:
        speech = random_utterance(rng, rate, held_out=held_out)
        start = int(rng.integers(0, max(1, len(audio) // 3)))
        speech = speech[: len(audio) - start]
        audio[start : start + len(speech)] = speech
    tracks: list[MotionTrack] = []
    for k in range(len(people)):
        if k == speaker:
            tracks.append(speech_track(audio, rate, fps, frames, rng))
        else:
            tracks.append(listening_track(frames, fps, rng))
    video = animate(picture, people, tracks)
    flags = torch.zeros(len(people), latent_frames, dtype=torch.bool)
    if speaker is not None:
        per_frame = audio[: frames * geometry.samples_per_frame].reshape(frames, -1)
        active = np.abs(per_frame).max(1) > 1e-4
        flags[speaker] = _chunk_flags(active, geometry, latent_frames)
    return Clip(
        video=video,
        reference=picture,
        audio=torch.from_numpy(audio),
        speaker=speaker,
        speaking_latents=flags,
        face_boxes=tuple(p.face_box for p in people),
        mouths=tuple(p.mouth for p in people),
        sources=tuple(p.source for p in people),
        kind=kind,
    )
