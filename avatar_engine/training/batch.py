"""Clips as DiT inputs: latents, reference channels, routed speech, face and mouth masks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatar_engine.audio.encoder import SpeechEncoder
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.model.audio import AudioConditioning
from avatar_engine.scene import blank_latent, face_mask_from_box, reference_channels
from avatar_engine.training.data.clips import Clip
from avatar_engine.training.data.motion import mouth_mask
from avatar_engine.training.features import clip_windows
from avatar_engine.vae.detail import encode_still
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.video import from_uint8_frames

TRAIN_CHARACTERS = 2  # every example is padded to this many characters (a missing one has an
# empty face mask, so it touches no token)
# A mouth's cells weigh at least as much together as a mouth on this share of the latent cells
# (a full-size portrait's mouth region covers about 10%; a half-size one in a pair 3-4%).
MOUTH_SHARE = 0.1


@dataclass(frozen=True)
class LatentClip:
    """A clip ready for the DiT (its video already through the VAE)."""

    latents: torch.Tensor  # [z, F, h, w]
    reference: torch.Tensor  # [z, h, w] latent of the still picture
    still: torch.Tensor  # [z, h, w] the picture held still, once the VAE settles
    audio: torch.Tensor  # [S] 16 kHz speech of the speaker
    speaker: int | None
    speaking: torch.Tensor  # [K, F] bool
    face_masks: torch.Tensor  # [K, gh, gw]
    mouths: torch.Tensor  # [h, w] mouth_cells
    kind: str


def encode_clip(vae: WanVAE, clip: Clip, preset: Preset) -> LatentClip:
    """Encode a clip (video uint8 or float) with the trained VAE."""
    video = clip.video if clip.video.dtype == torch.uint8 else (clip.video * 255).round()
    picture = (clip.reference * 255).round().to(torch.uint8)
    with torch.no_grad():
        frames = from_uint8_frames(video.to(torch.uint8)).transpose(0, 1)  # [3, T, H, W]
        latents = vae.encode_video(frames[None])[0]
        reference = vae.encode_image(from_uint8_frames(picture)[None])
    still = encode_still(vae, picture[None])[0, :, -1].clone()
    k = len(clip.face_boxes)
    masks = torch.zeros(TRAIN_CHARACTERS, preset.stream.grid_h, preset.stream.grid_w)
    masks[:k] = torch.stack([face_mask_from_box(preset.stream, b) for b in clip.face_boxes])
    speaking = torch.zeros(TRAIN_CHARACTERS, latents.shape[1], dtype=torch.bool)
    speaking[:k] = clip.speaking_latents
    mouths = mouth_cells(clip.mouths, video.shape[1], latents.shape[-2:])
    return LatentClip(
        latents, reference[0], still, clip.audio, clip.speaker, speaking, masks, mouths, clip.kind
    )


def mouth_cells(mouths, frame: int, grid: tuple[int, int]) -> torch.Tensor:
    """[h, w] on a latent grid: 0 off the mouths; on a mouth's cells, the weight that makes
    them together worth at least MOUTH_SHARE of the cells (1 for a mouth that large, more for
    a smaller one), so a small mouth can be weighed as much as a large one (even_mouths)."""
    cells = torch.zeros(grid)
    for mouth in mouths:
        pixels = mouth_mask([mouth], frame, (0, 0), (frame, frame))
        mask = F.adaptive_max_pool2d(pixels[None], grid)[0]
        weight = max(1.0, MOUTH_SHARE * mask.numel() / float(mask.sum().clamp(min=1)))
        cells = torch.maximum(cells, mask * weight)
    return cells


@dataclass(frozen=True)
class DiTInputs:
    x1: torch.Tensor  # [B, z, F, h, w] clean latents
    cond: torch.Tensor  # [B, stride + z, F, h, w] mask + reference channels
    audio: AudioConditioning
    context: torch.Tensor  # [B, Lt, text_dim] zeros (the embedded model has no text)
    mouths: torch.Tensor  # [B, h, w] mouth_cells: > 0 on the latent cells that show a mouth


def dit_inputs(
    clips: list[LatentClip], encoder: SpeechEncoder, geometry: FrameGeometry, preset: Preset
) -> DiTInputs:
    """Batch clips; speech features go through the encoder here, with gradients."""
    cfg = preset.dit
    x1 = torch.stack([c.latents for c in clips])
    frames = x1.shape[2]
    reference = torch.stack([c.reference for c in clips])
    blank = blank_latent(cfg, reference, torch.stack([c.still for c in clips]))
    cond = reference_channels(reference, blank, frames, cfg.temporal_stride)
    wave = torch.stack([c.audio for c in clips])
    speech = clip_windows(encoder, geometry, wave, frames)  # [B, F, W, Da]
    features = torch.zeros(len(clips), TRAIN_CHARACTERS, *speech.shape[1:])
    for b, clip in enumerate(clips):
        if clip.speaker is not None:
            features[b, clip.speaker] = speech[b]
    audio = AudioConditioning(
        features=features,
        speaking=torch.stack([c.speaking for c in clips]),
        face_masks=torch.stack([c.face_masks for c in clips]),
    )
    context = torch.zeros(len(clips), cfg.text_len, cfg.text_dim)
    return DiTInputs(x1, cond, audio, context, torch.stack([c.mouths for c in clips]))
