"""Offline render: one or several speakers' audio to frames through the engine's runtime, with
the per-chunk speech features and speaker routing a live stream uses, so a preview shows what
a call would show. The video
follows the audio: it has as many frames as the audio needs, and the audio is padded with
silence to the last frame's end, so an mp4 of it has matching durations."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.avatar.engine import AvatarEngine, FaceBox
from app.media import write_mp4
from avatar_engine.audio.resample import resample
from avatar_engine.audio.turns import Turn, plan_turns
from avatar_engine.vae.stream import VideoChunk
from llm_bridge.offline.tts import EspeakTTS
from llm_bridge.persona import Persona

__all__ = ["EngineBusy", "RenderStopped", "Rendered", "Turn", "render", "speak"]

LEAD_CHUNKS = 2  # submitted ahead of the one received: a disaggregated runtime overlaps them


class EngineBusy(RuntimeError):
    """The engine is streaming a call; a render would have to wait for its end."""


class RenderStopped(RuntimeError):
    """render()'s `stop` was set: the frames made so far were dropped."""


@dataclass(frozen=True)
class Rendered:
    """A rendered clip, its audio exactly as long as its frames."""

    frames: np.ndarray  # [T, H, W, 3] uint8 RGB
    audio: np.ndarray  # [S] float32 mono, S = T * rate / fps
    rate: int  # Hz of audio
    fps: int

    def save(self, path: Path | str) -> None:
        """An mp4 (h264 + aac), written aside and moved in place."""
        write_mp4(path, torch.from_numpy(self.frames), self.fps, self.audio, self.rate)


def render(
    engine: AvatarEngine,
    picture: np.ndarray,
    face_boxes: Sequence[FaceBox],
    turns: Sequence[Turn],
    *,
    seed: int = 0,
    max_seconds: float | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Rendered:
    """Turns spoken one after another (each from the chunk after the previous one's last), by
    the characters of one picture. Blocking; claims the engine for its duration (EngineBusy
    when it is streaming).

    Args:
        picture: [H, W, 3] uint8 RGB, framed as engine.scene frames it (centre crop to the
            stream's aspect ratio); face_boxes are fractions of that frame, one per character.
        turns: who speaks what; Turn.speaker indexes face_boxes. Turns at several rates are
            resampled to the highest of them.
        max_seconds: where the clip is cut (None: where the speech ends).
        stop: set from another thread to end the render before its next chunk
            (RenderStopped; the engine is free again when it is raised).
        progress: called after each chunk with (frames done, frames in all).
    """
    if not turns:
        raise ValueError("nothing to render: give at least one turn of speech")
    for turn in turns:
        if not 0 <= turn.speaker < len(face_boxes):
            raise ValueError(
                f"turn speaker {turn.speaker} is not one of the {len(face_boxes)} characters"
            )
    rate = max(t.rate for t in turns)
    plan = plan_turns(engine.encoder, engine.preset, [_resampled(t, rate) for t in turns])
    audio = plan.audio(rate)
    fps, geometry = engine.fps, engine.geometry
    total = -(-len(audio) * fps // rate)  # ceil: the frames the audio reaches into
    if max_seconds is not None:
        total = min(total, max(1, round(max_seconds * fps)))
        audio = audio[: round(total * rate / fps)]
    audio = np.pad(audio, (0, round(total * rate / fps) - len(audio)))
    scene = engine.scene(picture, face_boxes)
    stream = engine.preset.stream
    frames = np.empty((total, stream.output_height, stream.output_width, 3), dtype=np.uint8)
    chunks = geometry.chunk_of_frame(total - 1) + 1
    if not engine.stream_lock.acquire(blocking=False):
        raise EngineBusy("the avatar engine is streaming for someone else; render later")
    try:
        engine.runtime.start_session(scene, seed=seed)
        try:
            ahead = 0
            for t in range(chunks):
                if stop is not None and stop.is_set():
                    raise RenderStopped("the render was stopped")
                engine.runtime.submit(*plan.inputs(t, len(face_boxes)))
                ahead += 1
                if ahead > LEAD_CHUNKS:
                    _take(engine.runtime.receive(), frames, progress)
                    ahead -= 1
            for _ in range(ahead):
                _take(engine.runtime.receive(), frames, progress)
        finally:
            engine.runtime.end_session()
    finally:
        engine.stream_lock.release()
    return Rendered(frames=frames, audio=audio, rate=rate, fps=fps)


def _take(
    chunk: VideoChunk, frames: np.ndarray, progress: Callable[[int, int], None] | None
) -> None:
    """Copy a VideoChunk's frames in place; the last chunk is cut at the audio's end."""
    first = chunk.first_frame
    count = min(chunk.frames.shape[1], len(frames) - first)
    frames[first : first + count] = chunk.frames[0, :count].numpy()
    if progress is not None:
        progress(first + count, len(frames))


def _resampled(turn: Turn, rate: int) -> Turn:
    if turn.rate == rate:
        return turn
    return Turn(turn.speaker, resample(turn.audio, turn.rate, rate), rate)


def speak(persona: Persona, text: str) -> tuple[np.ndarray, int]:
    """`text` in the character's espeak-ng voice: ([S] float32, rate). Blocking; runs its own
    event loop (call it from a thread in async code)."""

    async def synthesize() -> tuple[np.ndarray, int]:
        voice = EspeakTTS(
            voice=persona.espeak_voice, rate=persona.espeak_rate, pitch=persona.espeak_pitch
        )
        try:
            frame = await voice.synthesize(text).collect()
        finally:
            await voice.aclose()
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        return (pcm / 32768.0).astype(np.float32), frame.sample_rate

    return asyncio.run(synthesize())
