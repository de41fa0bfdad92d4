"""Does a teacher move the mouth with the speech, and keep the picture, before any student is
distilled from it?

Its ODE (the one the student regresses on) is integrated on held-out clips twice, speaking
and with every character listening, at several speech guidances (distill.teacher_ode); the
decoded frames are judged by `avatar eval`'s face analyser: lip-sync (the inner-lip opening
against the speech envelope), silence (the opening's spread listening over speaking) and
identity (descriptor distance from the clip's picture), without the run-time reference detail.
A student regressed on this ODE reaches about its figures. The clips are held out of training
(the dev side: they choose settings), never the evaluation's test pool.
"""

from __future__ import annotations

import numpy as np
import torch

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.framing import as_uint8
from avatar_engine.training.batch import dit_inputs, encode_clip
from avatar_engine.training.data.clips import make_clip
from avatar_engine.training.distill import silenced, teacher_ode
from avatar_engine.training.judge import faces, metrics
from avatar_engine.training.judge.programs import EVAL_SEED
from avatar_engine.training.teacher import TEACHER_CHUNKS, Speaker
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.video import to_uint8_frames


def teacher_speech(
    teacher: Speaker,
    vae: WanVAE,
    preset: Preset,
    guidances: list[float],
    *,
    clips: int = 4,
    mouths_only: bool = False,
) -> dict[float, dict[str, float]]:
    """Per guidance: the mean lip-sync of the speaking samples, the lip opening's spread in the
    all-listening samples over that in the speaking ones, and the speaking samples' identity
    distance (the first chunk, where a sample settles from the reference picture, left out of
    the last two)."""
    g, size, stream = FrameGeometry.of_preset(preset), preset.stream.height, preset.stream
    settle = stream.video_frames_per_chunk
    names = ("lipsync", "silence_ratio", "identity")
    scores = {guidance: {name: [] for name in names} for guidance in guidances}
    for index in range(clips):
        clip = make_clip(EVAL_SEED, index, geometry=g, size=size, held_out=True, kind="speaking",
                         latent_frames=TEACHER_CHUNKS * stream.chunk_latent_frames)  # fmt: skip
        with torch.no_grad():
            inputs = dit_inputs([encode_clip(vae, clip, preset)], teacher.encoder, g, preset)
        noise = torch.randn(inputs.x1.shape, generator=torch.Generator().manual_seed(index))
        face = clip.face_boxes[0]
        reference = faces.describe(as_uint8(clip.reference).numpy(), face).descriptors[0]
        quiet = _opening(_sample(teacher, vae, silenced(inputs), noise, 1.0, False), face)
        for guidance in guidances:
            talk = _sample(teacher, vae, inputs, noise, guidance, mouths_only)
            track = faces.track_face(talk.numpy(), face, every=faces.DESCRIPTOR_EVERY)
            opening = metrics.lip_opening(track.landmarks)
            env = metrics.envelope(clip.audio.numpy(), len(opening), g.samples_per_frame)
            after = np.arange(len(opening)) >= settle
            figures = scores[guidance]
            figures["lipsync"].append(metrics.lagged_sync(opening, env, after)[0])
            figures["silence_ratio"].append(
                metrics.ratio(metrics.spread(quiet[settle:]), metrics.spread(opening[settle:]))
            )
            figures["identity"].append(
                metrics.mean(metrics.descriptor_distance(track.descriptors[settle:], reference))
            )
    return {
        guidance: {name: float(np.mean(v)) for name, v in figures.items()}
        for guidance, figures in scores.items()
    }


@torch.no_grad()
def _sample(teacher: Speaker, vae: WanVAE, inputs, noise, guidance: float, mouths_only: bool):
    """[T, H, W, 3] uint8 frames of the teacher's ODE endpoint from this noise."""
    _, x = teacher_ode(teacher.dit, inputs, noise, (), guidance=guidance, mouths_only=mouths_only)
    return to_uint8_frames(vae.decode(x)[0])[0]


def _opening(frames: torch.Tensor, face) -> np.ndarray:
    return metrics.lip_opening(faces.track_face(frames.numpy(), face).landmarks)
