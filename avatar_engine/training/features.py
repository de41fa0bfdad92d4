"""Speech features of a whole clip, differentiable, exactly as the stream computes them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avatar_engine.audio.encoder import SpeechEncoder
from avatar_engine.audio.geometry import FrameGeometry


def clip_audio_frames(geometry: FrameGeometry, latent_frames: int) -> int:
    """Video frames of audio a clip of this many latent frames reads: its frames plus the
    look-ahead of its last latent frame."""
    last_window_end = geometry.latent_start_frame(latent_frames - 1 + geometry.window_latent)
    return last_window_end + geometry.frames_per_latent


def clip_windows(
    encoder: SpeechEncoder, geometry: FrameGeometry, wave: torch.Tensor, latent_frames: int
) -> torch.Tensor:
    """Every latent frame's window of per-video-frame features for one clip.

    Args:
        wave: [N, S] 16 kHz audio, sample 0 at the start of video frame 0; shorter audio is
            padded with silence up to clip_audio_frames.

    Returns:
        [N, F, W, Da]: the same numbers the stream gives chunk by chunk (given the same
        audio), with gradients to the encoder.
    """
    g = geometry
    first = g.latent_start_frame(-g.window_latent) - encoder.context_frames  # frames before 0
    end = clip_audio_frames(g, latent_frames)
    spf = g.samples_per_frame
    wave = wave[:, : end * spf]
    padded = F.pad(wave, (-first * spf, end * spf - wave.shape[1]))  # [N, (end - first)*spf]
    frames = encoder(padded)[:, encoder.context_frames :]  # [N, end - first - ctx, Da]
    windows = frames.unfold(1, g.window_frames, g.frames_per_latent)  # [N, L', Da, W]
    return windows[:, :latent_frames].transpose(2, 3)  # [N, F, W, Da]
