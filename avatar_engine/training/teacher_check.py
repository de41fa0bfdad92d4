"""Does a teacher move the mouth with the speech, and keep the picture, before any student is
distilled from it?

Its ODE (the one the student regresses on) is integrated on held-out clips twice, speaking
and with every character listening, at several speech guidances (distill.teacher_ode); the
decoded frames give the same lip-sync, silence and identity figures as `avatar eval` (without
the run-time reference detail). A student regressed on this ODE reaches about its figures.
"""

from __future__ import annotations

import numpy as np
import torch

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.training.batch import dit_inputs, encode_clip
from avatar_engine.training.data.clips import make_clip
from avatar_engine.training.data.motion import mouth_region
from avatar_engine.training.distill import silenced, teacher_ode
from avatar_engine.training.evaluate import EVAL_SEED, identity_psnr, lipsync, mouth_motion
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
    """Per guidance: the mean lip-sync of the speaking samples, the mouth motion of the
    all-listening samples over that of the speaking ones, and the speaking samples' identity
    PSNR outside the mouth (the first chunk, where a sample settles from the reference
    picture, left out of the last two)."""
    g, size, stream = FrameGeometry.of_preset(preset), preset.stream.height, preset.stream
    settle = stream.video_frames_per_chunk
    names = ("lipsync", "silence_ratio", "identity_psnr")
    scores = {guidance: {name: [] for name in names} for guidance in guidances}
    for index in range(clips):
        clip = make_clip(EVAL_SEED, index, geometry=g, size=size, held_out=True, kind="speaking",
                         latent_frames=TEACHER_CHUNKS * stream.chunk_latent_frames)  # fmt: skip
        with torch.no_grad():
            inputs = dit_inputs([encode_clip(vae, clip, preset)], teacher.encoder, g, preset)
        noise = torch.randn(inputs.x1.shape, generator=torch.Generator().manual_seed(index))
        box, audio = mouth_region(clip.mouths[0], size), clip.audio.numpy()
        quiet = _sample(teacher, vae, silenced(inputs), noise, 1.0, False)
        quiet_motion = mouth_motion(quiet, box)[settle:].mean()
        for guidance in guidances:
            talk = _sample(teacher, vae, inputs, noise, guidance, mouths_only)
            figures = scores[guidance]
            figures["lipsync"].append(lipsync(talk, audio, box, g.samples_per_frame))
            figures["silence_ratio"].append(
                quiet_motion / max(mouth_motion(talk, box)[settle:].mean(), 1e-6)
            )
            figures["identity_psnr"].append(
                identity_psnr(talk[settle:], clip.reference, [box]).mean()
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
